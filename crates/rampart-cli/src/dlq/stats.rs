//! `rampart dlq stats`.

use std::{fmt::Write as _, process::ExitCode, sync::Arc, time::SystemTime};

use rampart_dead_letter::{
    DeadLetterStore, Filter, ParkReason, State, Stats, top_errors, unix_millis,
};

use crate::{
    cli::StatsArgs,
    error::CliError,
    format::{age_at, one_line, rfc3339},
    output::out,
};

pub(super) async fn stats(
    store: &Arc<dyn DeadLetterStore>,
    args: StatsArgs,
) -> Result<ExitCode, CliError> {
    let stats = store.stats().await?;
    let now = SystemTime::now();
    let top = match args.errors {
        Some(n) => Some(top_errors(store.as_ref(), Filter::all(), n).await?),
        None => None,
    };
    let text = if args.json {
        let mut value = json(&store.describe(), &stats, now);
        if let Some(top) = &top {
            value["top_errors"] = top
                .iter()
                .map(|g| {
                    serde_json::json!({
                        "message": g.message,
                        "count": g.count,
                        "kind": g.kind.as_str(),
                        "example": g.example.to_string(),
                    })
                })
                .collect();
        }
        value.to_string() + "\n"
    } else {
        let mut text = human(&store.describe(), &stats, now);
        if let Some(top) = &top {
            let _ = writeln!(text, "\ntop errors (pending)");
            if top.is_empty() {
                let _ = writeln!(text, "  none");
            }
            for g in top {
                let _ = writeln!(
                    text,
                    "  {:>6}  {:<13} {}  (e.g. {})",
                    g.count,
                    g.kind.as_str(),
                    one_line(&g.message),
                    g.example
                );
            }
        }
        text
    };
    out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The counts as JSON: every state and kind, zeros included; times as Unix milliseconds, as
/// in the record format.
fn json(store: &str, stats: &Stats, now: SystemTime) -> serde_json::Value {
    let by_state: serde_json::Map<String, serde_json::Value> = State::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), stats.in_state(*s).into()))
        .collect();
    let by_kind: serde_json::Map<String, serde_json::Value> = ParkReason::ALL
        .iter()
        .map(|k| {
            let n = stats.by_kind.get(k).copied().unwrap_or(0);
            (k.as_str().to_owned(), n.into())
        })
        .collect();
    serde_json::json!({
        "store": store,
        "total": stats.total,
        "backlog": stats.backlog(),
        "by_state": by_state,
        "by_kind": by_kind,
        "oldest_pending_first_failed_at": stats.oldest_pending.map(unix_millis),
        "oldest_pending_age_secs": stats
            .oldest_pending
            .map(|t| now.duration_since(t).unwrap_or_default().as_secs()),
    })
}

fn human(store: &str, stats: &Stats, now: SystemTime) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{:<16} {store}", "store");
    let _ = writeln!(s, "{:<16} {}", "total", stats.total);
    let _ = writeln!(s, "{:<16} {}", "backlog", stats.backlog());
    let oldest = stats.oldest_pending.map_or_else(
        || "none".to_owned(),
        |t| format!("{} (first failed {} ago)", rfc3339(t), age_at(t, now)),
    );
    let _ = writeln!(s, "{:<16} {oldest}", "oldest pending");
    let _ = writeln!(s, "\nby state");
    for state in State::ALL {
        let _ = writeln!(s, "  {:<14} {}", state.as_str(), stats.in_state(state));
    }
    let _ = writeln!(s, "\nby kind");
    for kind in ParkReason::ALL {
        let n = stats.by_kind.get(&kind).copied().unwrap_or(0);
        let _ = writeln!(s, "  {:<14} {n}", kind.as_str());
    }
    s
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rampart_dead_letter::conformance;

    use super::*;

    #[test]
    fn every_state_and_kind_is_shown_with_zeros() {
        let mut records: Vec<_> = (0..4).map(conformance::record).collect();
        records[3].state = State::Delivered;
        let stats = Stats::count(&records);
        let oldest = records[0].first_failed_at;
        let now = oldest + Duration::from_secs(192);

        let text = human("sqlite:x.db", &stats, now);
        assert!(text.contains("total            4\n"), "{text}");
        assert!(text.contains("backlog          3\n"), "{text}");
        assert!(text.contains("(first failed 3m12s ago)"), "{text}");
        assert!(text.contains("  pending        3\n"), "{text}");
        assert!(text.contains("  delivered      1\n"), "{text}");
        assert!(text.contains("  given_up       0\n"), "{text}");
        assert!(text.contains("  bulkhead_full  0\n"), "{text}");

        let json = json("sqlite:x.db", &stats, now);
        assert_eq!(json["total"], 4);
        assert_eq!(json["backlog"], 3);
        assert_eq!(json["by_state"]["redriving"], 0);
        assert_eq!(json["by_kind"]["transient"], 2);
        assert_eq!(json["oldest_pending_age_secs"], 192);
        assert_eq!(json["oldest_pending_first_failed_at"], unix_millis(oldest));
    }
}

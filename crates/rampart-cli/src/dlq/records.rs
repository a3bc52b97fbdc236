//! `rampart dlq list` and `rampart dlq show`.

use std::{fmt::Write as _, process::ExitCode, sync::Arc, time::SystemTime};

use rampart_dead_letter::{
    DeadLetter, DeadLetterStore, Payload, Query, StoreError, StoreErrorKind,
};

use crate::{
    cli::{ListArgs, ShowArgs},
    error::CliError,
    format::{age_at, one_line, printable, rfc3339, table},
    output::out,
};

/// The columns of `rampart dlq list`.
const COLUMNS: [&str; 9] = [
    "ID", "STATE", "KIND", "STATUS", "ATTEMPTS", "REDRIVES", "AGE", "METHOD", "URI",
];

/// How many bytes of a body that is not UTF-8 `show` prints, in hex.
const HEX_SHOWN: usize = 256;

pub(super) async fn list(
    store: &Arc<dyn DeadLetterStore>,
    args: ListArgs,
) -> Result<ExitCode, CliError> {
    let now = SystemTime::now();
    let mut query = Query::new(args.filter.to_filter(now), args.limit as usize);
    query.after = args.after;
    let records: Vec<DeadLetter> = store.list(&query).await?.into_iter().map(shown).collect();

    if args.json {
        // One record per line: a valid JSON array that `grep` and `jq` both read.
        let mut text = String::from("[");
        for (i, r) in records.iter().enumerate() {
            text.push_str(if i == 0 { "\n" } else { ",\n" });
            text.push_str(&r.to_json());
        }
        text.push_str(if records.is_empty() { "]\n" } else { "\n]\n" });
        out(&text)?;
    } else if records.is_empty() {
        eprintln!(
            "no dead letters ({}) in {}",
            args.filter.describe(),
            store.describe()
        );
    } else {
        let rows: Vec<Vec<String>> = records.iter().map(|r| row(r, now)).collect();
        out(&table(&COLUMNS, &rows))?;
    }
    if records.len() == args.limit as usize
        && let Some(last) = records.last()
    {
        eprintln!("more may follow: the next page is --after {}", last.id);
    }
    Ok(ExitCode::SUCCESS)
}

fn row(r: &DeadLetter, now: SystemTime) -> Vec<String> {
    vec![
        r.id.to_string(),
        r.state.to_string(),
        r.failure.kind.to_string(),
        r.failure
            .status
            .map_or_else(|| "-".to_owned(), |s| s.to_string()),
        r.attempts.to_string(),
        r.redrive_count.to_string(),
        age_at(r.first_failed_at, now),
        one_line(&r.target.method),
        one_line(&r.target.uri),
    ]
}

pub(super) async fn show(
    store: &Arc<dyn DeadLetterStore>,
    args: ShowArgs,
) -> Result<ExitCode, CliError> {
    let Some(record) = store.get(args.id).await?.map(shown) else {
        return Err(not_found(store.as_ref(), args.id));
    };
    if args.json {
        let json = serde_json::to_string_pretty(&record)
            .map_err(|e| CliError::new(format!("cannot write the record as JSON: {e}")))?;
        out(&(json + "\n"))?;
    } else {
        out(&describe(&record, SystemTime::now()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A record as this command shows it, in every format: without credentials, whatever wrote
/// it. Records parked by this version hold none; an older version's may still have the user
/// info of a URI, an API-key header or a URL in an error text. (The stored record is not
/// changed.)
fn shown(mut r: DeadLetter) -> DeadLetter {
    use rampart_core::redact::{self, QueryPolicy};
    r.target.uri = redact::request_uri(&r.target.uri, &QueryPolicy::keep_all()).0;
    for cause in &mut r.failure.chain {
        *cause = redact::text(cause).into_owned();
    }
    for h in &mut r.target.headers {
        if !h.redacted && redact::is_credential_header(&h.name) {
            h.value = Payload(bytes::Bytes::from_static(
                rampart_core::redact::REDACTED.as_bytes(),
            ));
            h.redacted = true;
        }
    }
    r
}

/// The error for an id the store does not hold.
pub(super) fn not_found(
    store: &dyn DeadLetterStore,
    id: rampart_dead_letter::DeadLetterId,
) -> CliError {
    StoreError::new(store.describe(), StoreErrorKind::NotFound)
        .with_source(format!("no dead letter with id {id}"))
        .into()
}

/// A record, every field, for people.
fn describe(r: &DeadLetter, now: SystemTime) -> String {
    let mut s = String::new();
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(s, "{name:<14} {value}");
    };
    let when = |t: SystemTime| format!("{} ({} ago)", rfc3339(t), age_at(t, now));
    field("id", &r.id.to_string());
    field("service", &one_line(&r.service));
    field("state", r.state.as_str());
    field(
        "request",
        &format!("{} {}", one_line(&r.target.method), one_line(&r.target.uri)),
    );
    field(
        "idempotency",
        &r.idempotency_key
            .as_deref()
            .map_or_else(|| "none".to_owned(), one_line),
    );
    field("attempts", &r.attempts.to_string());
    field("redrives", &r.redrive_count.to_string());
    field("first failed", &when(r.first_failed_at));
    field("last failed", &when(r.last_failed_at));
    field("updated", &when(r.updated_at));
    field(
        "failure",
        &match r.failure.status {
            Some(status) => format!("{}, status {status}", r.failure.kind),
            None => r.failure.kind.to_string(),
        },
    );
    for (i, cause) in r.failure.chain.iter().enumerate() {
        let prefix = if i == 0 { "" } else { "caused by: " };
        field("", &format!("{prefix}{}", one_line(cause)));
    }
    if !r.labels.is_empty() {
        field("labels", "");
        for (k, v) in &r.labels {
            let _ = writeln!(s, "  {}={}", one_line(k), one_line(v));
        }
    }

    let _ = writeln!(s, "headers ({})", r.target.headers.len());
    for h in &r.target.headers {
        let value = if h.redacted {
            "[redacted] (withheld when recorded; not resent on redrive)".to_owned()
        } else {
            payload_inline(&h.value)
        };
        let _ = writeln!(s, "  {}: {value}", one_line(&h.name));
    }

    let body = &r.target.body;
    let size = match (body.len, body.truncated) {
        (_, true) => format!(
            "{} bytes recorded of a larger body (truncated: it cannot be redriven)",
            body.data.0.len()
        ),
        (Some(len), false) => format!("{len} bytes"),
        (None, false) => format!("{} bytes", body.data.0.len()),
    };
    let hash = body
        .sha256
        .as_deref()
        .map_or_else(|| "sha256 unknown".to_owned(), |h| format!("sha256 {h}"));
    let _ = writeln!(s, "body           {size}, {hash}");
    if !body.data.0.is_empty() {
        match std::str::from_utf8(&body.data.0) {
            Ok(text) => {
                for line in printable(text).lines() {
                    let _ = writeln!(s, "  {line}");
                }
            }
            Err(_) => {
                let bytes = &body.data.0;
                let shown = &bytes[..bytes.len().min(HEX_SHOWN)];
                let _ = writeln!(s, "  (not UTF-8; hex below; --json has it all as base64)");
                for chunk in shown.chunks(32) {
                    let _ = writeln!(s, "  {}", hex(chunk));
                }
                if bytes.len() > HEX_SHOWN {
                    let _ = writeln!(s, "  … {} more bytes", bytes.len() - HEX_SHOWN);
                }
            }
        }
    }
    s
}

/// A header value on one line: the text, or the bytes in hex if it is not UTF-8.
fn payload_inline(p: &Payload) -> String {
    match std::str::from_utf8(&p.0) {
        Ok(text) => one_line(text),
        Err(_) => format!("{} (not UTF-8; hex)", hex(&p.0)),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use rampart_dead_letter::conformance;

    use super::*;

    #[test]
    fn show_prints_every_field_for_people() {
        let mut r = conformance::record(4);
        r.labels.insert("tenant".into(), "acme".into());
        let now = r.first_failed_at + Duration::from_secs(192);
        let text = describe(&r, now);
        for expected in [
            &format!("id             {}", r.id),
            "service        a",
            "state          pending",
            "request        POST http://127.0.0.1:9/orders/4",
            "idempotency    key-4",
            "attempts       3",
            "(3m12s ago)",
            "failure        timeout",
            "               failure 4",
            "               caused by: cause",
            "  tenant=acme",
            "headers (3)",
            "  content-type: application/json",
            "  x-binary: c3 28 ff (not UTF-8; hex)",
            "  authorization: [redacted]",
            "body           11 bytes, sha256 ",
            "  {\"order\":4}",
        ] {
            assert!(text.contains(expected), "{expected:?} missing in:\n{text}");
        }
        assert!(text.contains(&rfc3339(r.first_failed_at)));
    }

    #[test]
    fn a_binary_body_is_shown_in_hex_with_a_note() {
        let mut r = conformance::record(1);
        r.target.body =
            rampart_dead_letter::RecordedBody::whole(bytes::Bytes::from(vec![0xffu8; 300]));
        let text = describe(&r, SystemTime::now());
        assert!(text.contains("300 bytes, sha256 "), "{text}");
        assert!(text.contains("not UTF-8; hex below; --json has it all as base64"));
        assert!(text.contains("ff ff ff"));
        assert!(text.contains("… 44 more bytes"), "{text}");
    }

    #[test]
    fn list_rows_follow_the_columns() {
        let r = conformance::record(0);
        let row = row(&r, r.first_failed_at + Duration::from_secs(5));
        assert_eq!(row.len(), COLUMNS.len());
        assert_eq!(
            row[1..],
            [
                "pending",
                "transient",
                "503",
                "3",
                "0",
                "5s",
                "POST",
                "http://127.0.0.1:9/orders/0"
            ]
        );
    }
}

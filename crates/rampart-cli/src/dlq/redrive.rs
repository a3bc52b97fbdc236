//! `rampart dlq redrive`: records sent again through a plain-HTTP hyper client, paced by
//! [`Redrive`], with a progress bar on stderr.

use std::{
    io::IsTerminal as _,
    process::ExitCode,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rampart_dead_letter::{
    DeadLetter, DeadLetterId, DeadLetterStore, Progress, Redrive, RedriveOutcome, Skip, State,
    Summary,
};
use tower::timeout::Timeout;

use super::records::not_found;
use crate::{
    cli::RedriveArgs,
    error::{CliError, EXIT_REDRIVE_INCOMPLETE},
    format::one_line,
    output::out,
};

/// The client records are sent with: hyper's, plain HTTP/1, each send bounded by `--timeout`.
type HttpService = Timeout<Client<HttpConnector, Full<Bytes>>>;

/// How many records a refusal names.
const NAMED: usize = 3;

pub(super) async fn redrive(
    store: Arc<dyn DeadLetterStore>,
    args: RedriveArgs,
) -> Result<ExitCode, CliError> {
    if let Some(url) = &args.alert_webhook
        && url.scheme_str() != Some("http")
    {
        return Err(CliError::usage(format!(
            "--alert-webhook must be a plain http:// URL, got `{url}`"
        )));
    }
    let client = Client::builder(TokioExecutor::new()).build_http();
    let given_up: Arc<std::sync::Mutex<Vec<DeadLetter>>> = Arc::default();
    let g = given_up.clone();
    let mut builder = Redrive::builder(store.clone(), Timeout::new(client, args.timeout))
        .concurrency(args.concurrency)
        .max_redrives(args.max_redrives)
        .allow_keyless_replays(args.allow_keyless)
        .on_give_up(move |r| rampart_core::sync::lock(&g).push(r.clone()));
    if let Some(rate) = args.rate {
        builder = builder.rate(rate);
    }
    let redrive = builder
        .build()
        .map_err(|e| CliError::usage(e.to_string()))?;

    let summary = match args.id {
        Some(id) => one(&store, &redrive, id, args.quiet).await?,
        None => many(&store, &redrive, &args).await?,
    };
    let given_up = std::mem::take(&mut *rampart_core::sync::lock(&given_up));
    let alerts_failed = match &args.alert_webhook {
        Some(url) => alert(url, &given_up, args.timeout).await,
        None => 0,
    };

    let text = if args.json {
        serde_json::json!({
            "store": store.describe(),
            "seen": summary.seen,
            "delivered": summary.delivered,
            "failed": summary.failed,
            "given_up": summary.given_up,
            "skipped": summary.skipped,
            "errors": summary.errors,
        })
        .to_string()
            + "\n"
    } else {
        let errors = match summary.errors {
            0 => String::new(),
            n => format!(", {n} store errors (left to their leases)"),
        };
        format!(
            "redrive of {}: {} delivered, {} failed (pending again), {} given up, {} skipped{errors}\n",
            store.describe(),
            summary.delivered,
            summary.failed,
            summary.given_up,
            summary.skipped,
        )
    };
    out(&text)?;
    Ok(
        if summary.failed + summary.given_up + summary.errors + alerts_failed > 0 {
            ExitCode::from(EXIT_REDRIVE_INCOMPLETE)
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// POSTs each of `records` to `url`; returns how many could not be delivered (each reported on
/// stderr). One at a time: alerts are few, and their order is the order they were given up.
async fn alert(url: &http::Uri, records: &[DeadLetter], timeout: Duration) -> u64 {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut failed = 0;
    for record in records {
        let request = http::Request::post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-rampart-event", "dead_letter.given_up")
            .body(Full::new(Bytes::from(record.to_json())));
        let sent = match request {
            Ok(request) => tokio::time::timeout(timeout, client.request(request))
                .await
                .map_err(|_| format!("no answer within {timeout:?}"))
                .and_then(|r| r.map_err(|e| rampart_core::error::chain_line(&e)))
                .and_then(|res| {
                    if res.status().is_success() {
                        Ok(())
                    } else {
                        Err(format!("answered {}", res.status()))
                    }
                }),
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = sent {
            failed += 1;
            eprintln!(
                "alert for given-up {} not delivered to {}: {}",
                record.id,
                rampart_core::redact::text(&url.to_string()),
                one_line(&why)
            );
        }
    }
    failed
}

/// Redrives the record `id`.
async fn one(
    store: &Arc<dyn DeadLetterStore>,
    redrive: &Redrive<HttpService>,
    id: DeadLetterId,
    quiet: bool,
) -> Result<Summary, CliError> {
    let Some(record) = store.get(id).await? else {
        return Err(not_found(store.as_ref(), id));
    };
    if let Some(why) = unsendable(&record) {
        return Err(CliError::new(format!(
            "cannot redrive {id} from {}: {why}",
            store.describe()
        )));
    }
    let outcome = redrive.one::<Full<Bytes>, _>(id).await?;
    let mut summary = Summary::default();
    summary.add(&outcome);
    if let RedriveOutcome::Skipped { state, why } = &outcome {
        eprintln!("{id} was not sent: {}", skip_reason(*state, why));
    }
    if !quiet && let Some(line) = outcome_line(id, &outcome) {
        eprintln!("{line}");
    }
    Ok(summary)
}

/// Redrives every pending record (`--all`) or those matching the filters.
async fn many(
    store: &Arc<dyn DeadLetterStore>,
    redrive: &Redrive<HttpService>,
    args: &RedriveArgs,
) -> Result<Summary, CliError> {
    let mut filter = args.filter.to_filter(SystemTime::now());
    // Every claimable record: the pending ones, and those a redrive that crashed or was
    // cancelled left `redriving` under a lease that has run out.
    let claimable = args.all || filter.state.is_none();
    let filters = if claimable {
        [State::Pending, State::Redriving]
            .map(|state| {
                let mut f = filter.clone();
                f.state = Some(state);
                f
            })
            .to_vec()
    } else {
        vec![filter.clone()]
    };
    filter.state = filters[0].state;

    // Look before sending: the client speaks plain HTTP only, and a record it cannot send
    // would count as a failed redrive (and in the end be given up). The count sizes the bar.
    let mut selected = 0u64;
    let mut refused: Vec<(DeadLetterId, String)> = Vec::new();
    let mut refused_count = 0u64;
    let now = SystemTime::now();
    for f in &filters {
        super::for_each_matching(store, f.clone(), |r| {
            if claimable && !r.is_claimable(now) {
                return;
            }
            selected += 1;
            if let Some(why) = unsendable(r) {
                refused_count += 1;
                if refused.len() < NAMED {
                    refused.push((r.id, why));
                }
            }
        })
        .await?;
    }
    if refused_count > 0 {
        let named: Vec<String> = refused
            .iter()
            .map(|(id, why)| format!("{id} ({why})"))
            .collect();
        return Err(CliError::new(format!(
            "refusing to redrive: {refused_count} of the {selected} selected records in {} \
             cannot be sent by this command's plain-HTTP client, e.g. {}; nothing was sent. \
             Narrow the selection (--service, --kind) or redrive them through the library \
             (rampart_dead_letter::Redrive) with your own client",
            store.describe(),
            named.join(", ")
        )));
    }
    if selected == 0 {
        eprintln!(
            "nothing to redrive: no {} records match in {}",
            filter.state.map_or("", State::as_str),
            store.describe()
        );
        return Ok(Summary::default());
    }

    let bar = progress_bar(selected, args.quiet);
    let quiet = args.quiet;
    let report = |p: Progress<'_>| {
        if bar.position() >= bar.length().unwrap_or(0) {
            bar.inc_length(1);
        }
        bar.inc(1);
        bar.set_message(format!(
            "{} delivered, {} failed, {} given up",
            p.summary.delivered, p.summary.failed, p.summary.given_up
        ));
        if !quiet && let Some(line) = outcome_line(p.id, p.outcome) {
            bar.suspend(|| eprintln!("{line}"));
        }
    };
    let summary = if claimable {
        redrive.all::<Full<Bytes>, _>(report).await
    } else {
        redrive.matching::<Full<Bytes>, _>(filter, report).await
    };
    bar.finish_and_clear();
    Ok(summary?)
}

/// Why this command cannot send `record`, if it cannot: its URI is not absolute plain HTTP.
fn unsendable(record: &DeadLetter) -> Option<String> {
    let uri = &record.target.uri;
    match uri.parse::<http::Uri>() {
        Ok(u) if u.scheme_str() == Some("http") && u.authority().is_some() => None,
        Ok(u) if u.scheme_str() == Some("https") => Some(format!(
            "{} is https; this command sends plain http only",
            one_line(uri)
        )),
        Ok(_) => Some(format!("{} is not an absolute http:// URI", one_line(uri))),
        Err(e) => Some(format!("{} is not a valid URI: {e}", one_line(uri))),
    }
}

/// A line for stderr about a record that did not get through.
fn outcome_line(id: DeadLetterId, outcome: &RedriveOutcome) -> Option<String> {
    let (what, failure) = match outcome {
        RedriveOutcome::Failed { failure } => ("failed   ", failure),
        RedriveOutcome::GivenUp { failure } => ("given up ", failure),
        RedriveOutcome::Errored { error, sent } => {
            let sent = if *sent { "sent, " } else { "" };
            return Some(format!(
                "error    {id}  {}({sent}left to its lease)",
                one_line(error) + " "
            ));
        }
        RedriveOutcome::Skipped { state, why } => {
            return Some(format!("skipped  {id}  {}", skip_reason(*state, why)));
        }
        _ => return None,
    };
    let cause = failure
        .chain
        .iter()
        .map(|c| one_line(c))
        .collect::<Vec<_>>()
        .join(": ");
    Some(format!("{what}{id}  {}: {cause}", failure.kind))
}

/// Why a record was not sent, in words.
fn skip_reason(state: State, why: &Skip) -> String {
    match why {
        Skip::Leased { owner, until } => format!(
            "another redrive ({}) holds it for {} s more",
            one_line(owner),
            until
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .as_secs()
        ),
        Skip::Contended => "another redrive claimed it first".into(),
        Skip::Duplicate => "a fallback copy the primary store also kept; removed".into(),
        Skip::Rejected { kind } => format!(
            "refused before it was sent ({kind}: the upstream's breaker is open, or the client \
             is busy); left pending, no redrive counted"
        ),
        Skip::Unkeyed => "a non-idempotent request without an idempotency key may have run \
                          already; check, then redrive it with --allow-keyless"
            .into(),
        _ => format!("it is already {state}"),
    }
}

/// A bar on stderr, hidden when stderr is not a terminal or with `--quiet`.
fn progress_bar(len: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{spinner} redriving [{bar:30}] {pos}/{len} {msg} ({per_sec}, {eta} left)",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rampart_dead_letter::{Failure, ParkReason, conformance};

    use super::*;

    #[test]
    fn only_absolute_plain_http_uris_are_sent() {
        let mut r = conformance::record(1);
        assert_eq!(unsendable(&r), None);
        r.target.uri = "https://billing/charge".into();
        assert!(unsendable(&r).unwrap().contains("plain http only"));
        r.target.uri = "/charge".into();
        assert!(
            unsendable(&r)
                .unwrap()
                .contains("not an absolute http:// URI")
        );
        r.target.uri = "http://bad host/".into();
        assert!(unsendable(&r).unwrap().contains("not a valid URI"));
    }

    #[test]
    fn failures_get_a_line_with_their_cause() {
        let id = DeadLetterId::new();
        let failure = Failure {
            kind: ParkReason::Transient,
            status: Some(503),
            chain: vec!["response status 503".into()],
        };
        let line = outcome_line(id, &RedriveOutcome::Failed { failure }).unwrap();
        assert_eq!(
            line,
            format!("failed   {id}  transient: response status 503")
        );
        assert_eq!(
            outcome_line(id, &RedriveOutcome::Delivered { status: 200 }),
            None
        );
    }
}

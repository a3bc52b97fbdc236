//! The command line, as clap parses it.

use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand, ValueEnum};
use rampart_dead_letter::{DeadLetterId, Filter, ParkReason, State};

use crate::format::parse_duration;

/// Rampart's command line tool: inspect, redrive and purge dead letters.
#[derive(Debug, Parser)]
#[command(name = "rampart", version, propagate_version = true)]
pub(crate) struct Cli {
    /// The dead-letter store: `sqlite:PATH` (or a bare path ending in .db, .sqlite, .sqlite3),
    /// `redis://HOST[:PORT][/DB][?prefix=P]` (default prefix `rampart:dlq`), or
    /// `nats://HOST[:PORT][?bucket=B]` (default bucket `rampart_dlq`).
    #[arg(
        long,
        global = true,
        env = "RAMPART_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub(crate) store: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Dead letters: requests that finally failed, parked in a store.
    #[command(subcommand)]
    Dlq(Dlq),
}

/// Inspect, redrive and purge the dead letters of a store.
#[derive(Debug, Subcommand)]
#[command(after_help = "\
Exit codes: 0 success; 1 an error (one line on stderr: a bad store URL, an unreachable store, \
an unknown record id); 2 a usage error (a purge without --yes too); 3 a redrive that ran but left records failed or given \
up.")]
pub(crate) enum Dlq {
    /// List records, oldest first: a table, or a JSON array with --json.
    List(ListArgs),
    /// Show one record: every field, its headers, body and error chain.
    Show(ShowArgs),
    /// Count records by state and by failure kind; the backlog and its age.
    Stats(StatsArgs),
    /// Send records again over plain HTTP, with their original idempotency key.
    #[command(after_help = "\
Select the records by ID, with --all (every pending record), or with filters: with no \
--state, the filters select pending records only.

The records are sent with a plain-HTTP client (hyper): an https:// target is refused before \
anything is sent. Redrive those through the library (rampart_dead_letter::Redrive) with your \
own client stack, which also adds the credentials of redacted headers.

Interrupting a redrive may leave the records in flight `redriving`: redrive them again with \
`--state redriving`.

Exit code 0 if every record sent was delivered (or none needed sending), 3 if any failed again \
or was given up, 1 on an error.")]
    Redrive(RedriveArgs),
    /// Remove records for good (with --yes); the same filters as `list`.
    Purge(PurgeArgs),
}

/// A record state, as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StateArg {
    Pending,
    Redriving,
    Delivered,
    #[value(name = "given_up", alias = "given-up")]
    GivenUp,
}

impl From<StateArg> for State {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Pending => State::Pending,
            StateArg::Redriving => State::Redriving,
            StateArg::Delivered => State::Delivered,
            StateArg::GivenUp => State::GivenUp,
        }
    }
}

/// A failure kind, as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum KindArg {
    Transient,
    Fatal,
    #[value(name = "circuit_open", alias = "circuit-open")]
    CircuitOpen,
    #[value(name = "bulkhead_full", alias = "bulkhead-full")]
    BulkheadFull,
    Timeout,
}

impl From<KindArg> for ParkReason {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Transient => ParkReason::Transient,
            KindArg::Fatal => ParkReason::Fatal,
            KindArg::CircuitOpen => ParkReason::CircuitOpen,
            KindArg::BulkheadFull => ParkReason::BulkheadFull,
            KindArg::Timeout => ParkReason::Timeout,
        }
    }
}

/// Which records: every filter given must hold.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct FilterArgs {
    /// Only records in this state.
    #[arg(long)]
    pub(crate) state: Option<StateArg>,
    /// Only records that failed this way.
    #[arg(long)]
    pub(crate) kind: Option<KindArg>,
    /// Only records parked by this service.
    #[arg(long, value_name = "NAME")]
    pub(crate) service: Option<String>,
    /// Only records whose last failure is at least this old, e.g. `30m`, `7d`, `1h30m`.
    #[arg(long, value_name = "AGE", value_parser = parse_duration)]
    pub(crate) older_than: Option<Duration>,
}

impl FilterArgs {
    pub(crate) fn to_filter(&self, now: SystemTime) -> Filter {
        let mut filter = Filter::all();
        filter.state = self.state.map(Into::into);
        filter.kind = self.kind.map(Into::into);
        filter.service.clone_from(&self.service);
        filter.failed_before = self
            .older_than
            .map(|age| now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH));
        filter
    }

    /// The filter in words, for messages: `state=delivered kind=timeout`, or `all records`.
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = self.state {
            parts.push(format!("state={}", State::from(s)));
        }
        if let Some(k) = self.kind {
            parts.push(format!("kind={}", ParkReason::from(k)));
        }
        if let Some(s) = &self.service {
            parts.push(format!("service={s}"));
        }
        if let Some(age) = self.older_than {
            parts.push(format!("older-than={}", crate::format::age(age)));
        }
        if parts.is_empty() {
            "all records".into()
        } else {
            parts.join(" ")
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// At most this many records.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) limit: u32,
    /// The page after this record id (the last id of the previous page).
    #[arg(long, value_name = "ID")]
    pub(crate) after: Option<DeadLetterId>,
    /// One JSON array of records, in the record format (`v`, `id`, `target`, `failure`, …).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The record's id.
    pub(crate) id: DeadLetterId,
    /// The record as JSON, in the record format.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// As one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also the N most common failures of the pending records, by normalised message (ids,
    /// addresses and long numbers replaced), with a count and the oldest record of each. It
    /// reads every pending record.
    #[arg(long, value_name = "N")]
    pub(crate) errors: Option<usize>,
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("selection")
        .required(true)
        .multiple(true)
        .args(["id", "all", "state", "kind", "service", "older_than"]),
))]
pub(crate) struct RedriveArgs {
    /// Redrive this record (pending or redriving).
    #[arg(conflicts_with_all = ["all", "state", "kind", "service", "older_than"])]
    pub(crate) id: Option<DeadLetterId>,
    /// Redrive every claimable record: the pending ones, and those a redrive that crashed or
    /// was cancelled left redriving under a lease that has run out.
    #[arg(long, conflicts_with_all = ["state", "kind", "service", "older_than"])]
    pub(crate) all: bool,
    // The records matching these filters (pending ones only, unless --state says otherwise).
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// At most this many sends per second (default: no limit).
    #[arg(long, value_name = "N")]
    pub(crate) rate: Option<f64>,
    /// At most this many sends at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub(crate) concurrency: usize,
    /// Give a record up after this many failed redrives in all.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub(crate) max_redrives: u32,
    /// How long one send may take before it counts as a timeout.
    #[arg(long, value_name = "AGE", default_value = "30s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Also resend non-idempotent requests (POST, PATCH, …) that carry no idempotency key.
    /// They are skipped by default: such a request may have run before it was parked, and a
    /// resend would do its work again.
    #[arg(long)]
    pub(crate) allow_keyless: bool,
    /// No progress bar and no line per failed record; the summary only.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// The summary as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// POST every record given up to this plain-HTTP URL, as the record's JSON (redacted as
    /// stored), with `x-rampart-event: dead_letter.given_up`: the alert hook, from the CLI.
    /// A webhook that fails is reported on stderr and makes the exit code 3.
    #[arg(long, value_name = "URL")]
    pub(crate) alert_webhook: Option<http::Uri>,
}

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Really remove them. Without it, nothing is removed: the command says how many would be.
    #[arg(long)]
    pub(crate) yes: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn redrive_needs_exactly_one_kind_of_selection() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from([&["rampart", "--store", "x.db", "dlq", "redrive"], args].concat())
        };
        assert!(parse(&[]).is_err());
        assert!(parse(&["--all"]).is_ok());
        assert!(parse(&["--kind", "timeout", "--service", "a"]).is_ok());
        assert!(parse(&["--all", "--kind", "timeout"]).is_err());
        let id = DeadLetterId::new().to_string();
        assert!(parse(&[&id]).is_ok());
        assert!(parse(&[&id, "--all"]).is_err());
        assert!(parse(&["not-an-id"]).is_err());
    }

    #[test]
    fn filters_use_the_format_names() {
        let cli = Cli::try_parse_from([
            "rampart",
            "dlq",
            "list",
            "--state",
            "given_up",
            "--kind",
            "circuit_open",
        ])
        .unwrap();
        let Command::Dlq(Dlq::List(list)) = cli.command else {
            panic!("not a list")
        };
        let filter = list.filter.to_filter(SystemTime::now());
        assert_eq!(filter.state, Some(State::GivenUp));
        assert_eq!(filter.kind, Some(ParkReason::CircuitOpen));
        assert_eq!(list.limit, 50);
        assert_eq!(list.filter.describe(), "state=given_up kind=circuit_open");
    }
}

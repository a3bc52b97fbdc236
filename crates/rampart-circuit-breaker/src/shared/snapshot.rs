//! [`Snapshot`]: what one replica publishes of one breaker, and its wire format.

use std::{fmt::Write as _, time::Duration};

use crate::{
    events::{Reason, State},
    policy::{LocalView, Mode},
};

/// The longest snapshot a replica publishes or reads, in bytes. Anything longer is not a
/// snapshot this version wrote: ignored and counted.
pub const MAX_SNAPSHOT_LEN: usize = 192;

/// The longest open time a snapshot may report: a day. A longer one is refused as corrupt
/// (no breaker is configured so; a peer cannot hold the others open for longer).
pub const MAX_OPEN_LEFT: Duration = Duration::from_secs(24 * 3600);

/// One replica's view of one breaker, as it publishes it: state, mode, why it is in its state,
/// the counts of its window and, while open, the time left as a duration (never an instant:
/// replicas' clocks need not agree).
///
/// # Format, version 1
///
/// One line of ASCII, fields separated by one space, at most [`MAX_SNAPSHOT_LEN`] bytes:
///
/// ```text
/// 1 <state> <mode> <calls> <failures> <slow> <open_left_ms|-> <generation> <reason>
/// 1 open normal 40 31 0 29500 7 failure_rate
/// ```
///
/// `state` and `mode` are [`State::as_str`] and [`Mode::as_str`], `reason` is
/// [`Reason::as_str`] (why it entered its state). Counts are decimal; `failures` and `slow`
/// never exceed `calls`. A reader refuses anything else (another version, a field missing or
/// extra, a number out of range): a replica's snapshot can carry nothing into another but
/// these numbers and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The breaker's state on that replica.
    pub state: State,
    /// Its mode there (a forced or disabled breaker is reported, and not followed).
    pub mode: Mode,
    /// Why it entered its state: a replica that opened on its own evidence says why
    /// (`failure_rate`, …); one that followed others says [`Reason::Peers`], and is not
    /// counted as evidence by the others.
    pub reason: Reason,
    /// Calls in its window.
    pub calls: u64,
    /// Failures among them.
    pub failures: u64,
    /// Slow calls among them.
    pub slow: u64,
    /// While open: how long until it probes, when it published.
    pub open_left: Option<Duration>,
    /// Its breaker's generation (one more at each transition).
    pub generation: u64,
}

impl Snapshot {
    pub(crate) fn of(view: &LocalView) -> Self {
        Self {
            state: view.state,
            mode: view.mode,
            reason: view.reason,
            calls: view.calls,
            failures: view.failures.min(view.calls),
            slow: view.slow.min(view.calls),
            open_left: view.open_left.map(|d| d.min(MAX_OPEN_LEFT)),
            generation: view.generation,
        }
    }

    /// Whether this replica opened on its own evidence (not following others, not forced):
    /// what [`Follow`](super::Decision::Follow) and [`Quorum`](super::Decision::Quorum) count.
    pub fn opened_on_evidence(&self) -> bool {
        self.state == State::Open
            && matches!(self.mode, Mode::Normal | Mode::MetricsOnly)
            && !matches!(self.reason, Reason::Peers | Reason::Manual)
    }

    /// Whether its window counts towards [`Pooled`](super::Decision::Pooled): the state
    /// machine runs there (not forced).
    pub fn counts_pooled(&self) -> bool {
        matches!(self.mode, Mode::Normal | Mode::MetricsOnly | Mode::Disabled)
    }

    /// The wire form (see [the format](Self#format-version-1)).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64);
        let _ = write!(
            out,
            "1 {} {} {} {} {} ",
            self.state.as_str(),
            self.mode.as_str(),
            self.calls,
            self.failures,
            self.slow
        );
        match self.open_left {
            Some(d) => {
                let _ = write!(out, "{}", d.as_millis());
            }
            None => out.push('-'),
        }
        let _ = write!(out, " {} {}", self.generation, self.reason.as_str());
        out
    }

    /// Reads the wire form; `None` for anything that is not exactly a version-1 snapshot.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > MAX_SNAPSHOT_LEN {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?;
        let mut f = text.split(' ');
        if f.next()? != "1" {
            return None;
        }
        let state = match f.next()? {
            "closed" => State::Closed,
            "open" => State::Open,
            "half_open" => State::HalfOpen,
            _ => return None,
        };
        let mode = match f.next()? {
            "normal" => Mode::Normal,
            "forced_open" => Mode::ForcedOpen,
            "forced_closed" => Mode::ForcedClosed,
            "disabled" => Mode::Disabled,
            "metrics_only" => Mode::MetricsOnly,
            _ => return None,
        };
        let num = |s: Option<&str>| -> Option<u64> {
            let s = s?;
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let calls = num(f.next())?;
        let failures = num(f.next())?;
        let slow = num(f.next())?;
        if failures > calls || slow > calls {
            return None;
        }
        let open_left = match f.next()? {
            "-" => None,
            ms => {
                let d = Duration::from_millis(num(Some(ms))?);
                if d > MAX_OPEN_LEFT {
                    return None;
                }
                Some(d)
            }
        };
        if (state == State::Open) != open_left.is_some() {
            return None;
        }
        let generation = num(f.next())?;
        let reason = Reason::from_name(f.next()?)?;
        if f.next().is_some() {
            return None;
        }
        Some(Self {
            state,
            mode,
            reason,
            calls,
            failures,
            slow,
            open_left,
            generation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> Snapshot {
        Snapshot {
            state: State::Open,
            mode: Mode::Normal,
            reason: Reason::FailureRate,
            calls: 40,
            failures: 31,
            slow: 0,
            open_left: Some(Duration::from_millis(29_500)),
            generation: 7,
        }
    }

    #[test]
    fn a_snapshot_reads_back_as_it_was_written() {
        let s = open();
        assert_eq!(s.encode(), "1 open normal 40 31 0 29500 7 failure_rate");
        assert_eq!(Snapshot::decode(s.encode().as_bytes()), Some(s));
        let closed = Snapshot {
            state: State::Closed,
            open_left: None,
            reason: Reason::ProbesSucceeded,
            ..s
        };
        assert_eq!(Snapshot::decode(closed.encode().as_bytes()), Some(closed));
        let longest = Snapshot {
            calls: u64::MAX,
            failures: u64::MAX,
            slow: u64::MAX,
            generation: u64::MAX,
            open_left: Some(MAX_OPEN_LEFT),
            mode: Mode::MetricsOnly,
            reason: Reason::HalfOpenNoVerdict,
            ..s
        };
        assert!(longest.encode().len() <= MAX_SNAPSHOT_LEN);
        assert_eq!(Snapshot::decode(longest.encode().as_bytes()), Some(longest));
    }

    #[test]
    fn anything_but_a_version_1_snapshot_is_refused() {
        for bad in [
            "",
            "2 open normal 40 31 0 29500 7 failure_rate",
            "1 open normal 40 31 0 29500 7",
            "1 open normal 40 31 0 29500 7 failure_rate extra",
            "1 ajar normal 40 31 0 29500 7 failure_rate",
            "1 open normal 40 41 0 29500 7 failure_rate",
            "1 open normal 40 31 0 - 7 failure_rate",
            "1 closed normal 40 31 0 29500 7 failure_rate",
            "1 open normal +40 31 0 29500 7 failure_rate",
            "1 open normal 40 31 0 86400001 7 failure_rate",
            "1 open normal 40 31 0 29500 7 because",
            "1 open normal 99999999999999999999 31 0 29500 7 failure_rate",
            "1  open normal 40 31 0 29500 7 failure_rate",
        ] {
            assert_eq!(Snapshot::decode(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(Snapshot::decode(&[b'1'; MAX_SNAPSHOT_LEN + 1]), None);
        assert_eq!(Snapshot::decode(b"1 open \xff"), None);
    }

    #[test]
    fn only_an_open_on_evidence_is_evidence() {
        assert!(open().opened_on_evidence());
        let followed = Snapshot {
            reason: Reason::Peers,
            ..open()
        };
        assert!(!followed.opened_on_evidence());
        let forced = Snapshot {
            mode: Mode::ForcedOpen,
            ..open()
        };
        assert!(!forced.opened_on_evidence());
        assert!(!forced.counts_pooled());
    }
}

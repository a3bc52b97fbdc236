//! What a redrive reports: each record's [`RedriveOutcome`] (and, when it was not sent, why:
//! [`Skip`]), the [`Summary`] of a run, and the [`Progress`] handed over after each record.

use std::time::SystemTime;

use rampart_core::rejection::RejectionKind;

use crate::record::{DeadLetterId, Failure, State};

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedriveOutcome {
    /// Sent, and the response was not a failure: the record is `delivered`.
    Delivered {
        /// The response's status.
        status: u16,
    },
    /// Sent, and it failed again: back to `pending`.
    Failed {
        /// How, the last time.
        failure: Failure,
    },
    /// It failed again (or could not be sent at all) and has been redriven the maximum number
    /// of times: `given_up`.
    GivenUp {
        /// Why.
        failure: Failure,
    },
    /// Not sent, and left as it was (a [rejected](Skip::Rejected) one was claimed, then
    /// released unchanged).
    Skipped {
        /// Its state when it was looked at.
        state: State,
        /// Why it was not sent.
        why: Skip,
    },
    /// The store failed for this record (reading it, claiming it, or recording its outcome),
    /// or the service panicked. Nothing else was stopped by it. A record that was claimed
    /// stays `redriving` until its lease runs out, and is then claimed by the next redrive
    /// (sent again, with the same idempotency key, if the first send went out).
    Errored {
        /// What went wrong, with the store's error.
        error: String,
        /// Whether the request had been sent when it went wrong.
        sent: bool,
    },
}

/// Why a record was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Skip {
    /// It is already `delivered` or `given_up`.
    Finished,
    /// Another redrive holds it, under a lease that has not run out.
    Leased {
        /// The redrive holding it.
        owner: String,
        /// When its lease runs out.
        until: SystemTime,
    },
    /// Another redrive changed it between this redrive's read and its claim (the claim's
    /// compare-and-set failed): that one sends it.
    Contended,
    /// A non-idempotent request (`POST`, `PATCH`, …) with no idempotency key: it may have run
    /// before it was parked (a timeout, a reset after the server committed), and nothing at
    /// the server could tell a resend from new work. Redrive it by hand after checking, or
    /// opt in with [`allow_keyless_replays`](crate::RedriveBuilder::allow_keyless_replays).
    Unkeyed,
    /// A layer of the redrive's own service refused it before it went out: an open circuit
    /// or a full bulkhead (the dependency is failing again, or the caller is busy). The
    /// record was released as it was, `pending`, with no redrive counted, so a local refusal
    /// never uses up [`max_redrives`](crate::RedriveBuilder::max_redrives).
    Rejected {
        /// The refusal: [`RejectionKind::CircuitOpen`], [`RejectionKind::BulkheadFull`],
        /// [`RejectionKind::RateLimited`] or [`RejectionKind::BudgetExhausted`].
        kind: RejectionKind,
    },
    /// A copy the secondary store took while the primary was failing, though the primary
    /// kept the record too (its append timed out after it landed): the primary's record is
    /// the one sent, and this copy was removed. See
    /// [`RedriveBuilder::primary`](crate::RedriveBuilder::primary).
    Duplicate,
}

/// Counts of a redrive over many records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records looked at.
    pub seen: u64,
    /// Delivered.
    pub delivered: u64,
    /// Failed again, still pending.
    pub failed: u64,
    /// Given up.
    pub given_up: u64,
    /// Skipped (already delivered or given up, or held by another redrive).
    pub skipped: u64,
    /// Records the store (or the service, by panicking) failed for: see [`RedriveOutcome::Errored`].
    pub errors: u64,
}

impl Summary {
    /// Counts one more record with `outcome`.
    pub fn add(&mut self, outcome: &RedriveOutcome) {
        self.seen += 1;
        match outcome {
            RedriveOutcome::Delivered { .. } => self.delivered += 1,
            RedriveOutcome::Failed { .. } => self.failed += 1,
            RedriveOutcome::GivenUp { .. } => self.given_up += 1,
            RedriveOutcome::Skipped { .. } => self.skipped += 1,
            RedriveOutcome::Errored { .. } => self.errors += 1,
        }
    }
}

/// Progress of a redrive over many records, reported after each record.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The record just done.
    pub id: DeadLetterId,
    /// What happened to it.
    pub outcome: &'a RedriveOutcome,
    /// Counts so far.
    pub summary: &'a Summary,
}

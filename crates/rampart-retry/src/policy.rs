//! The retry decision: after a failed attempt, retry (and after how long) or give up (and why).
//!
//! Plain synchronous code: the adapter tells it what happened ([`Attempt`]) and it answers
//! with a [`Decision`], from the configured limits, the [`Backoff`], the [`RetryBudget`] and
//! what the server asked for. The order of the checks is the order of the reasons below: the
//! first that applies wins, so the reason a caller sees is the most fundamental one.
//!
//! ```
//! use std::time::Duration;
//! use rampart_retry::{backoff::{Backoff, Jitter}, policy::{Attempt, Decision, GiveUp, RetryPolicy}};
//!
//! let policy = RetryPolicy::builder()
//!     .max_attempts(3)
//!     .backoff(Backoff::builder().jitter(Jitter::None).build()?)
//!     .build()?;
//! let failed = Attempt::transient(1);
//! assert_eq!(policy.decide(&failed), Decision::Retry { after: Duration::from_secs(1) });
//! // The server asked for 3 s: never retry sooner than that.
//! let asked = Attempt { server_delay: Some(Duration::from_secs(3)), ..Attempt::transient(2) };
//! assert_eq!(policy.decide(&asked), Decision::Retry { after: Duration::from_secs(3) });
//! assert_eq!(policy.decide(&Attempt::transient(3)), Decision::GiveUp(GiveUp::AttemptsExhausted));
//! # Ok::<(), rampart_core::error::ConfigError>(())
//! ```

use std::{fmt, time::Duration};

use rampart_core::error::ConfigError;

use crate::{
    backoff::Backoff,
    budget::RetryBudget,
    server_delay::{ServerDelay, judge_server_delay},
};

const COMPONENT: &str = "retry";

/// What happened on the attempt that just failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Attempts made so far, this one included (1 after the first).
    pub number: u32,
    /// `true` if the failure may go away on a retry (the classifier's word).
    pub transient: bool,
    /// `true` if the request may be sent again without doing its work twice: an idempotent
    /// method, or one that carries an idempotency key.
    pub replay_safe: bool,
    /// `true` if the request (its body) can be sent again at all.
    pub replayable: bool,
    /// The delay the server asked for (`Retry-After`, `grpc-retry-pushback-ms`), if any.
    pub server_delay: Option<Duration>,
    /// `true` if the server said not to retry (a negative or malformed gRPC pushback).
    pub server_forbids: bool,
    /// Time spent since the first attempt started.
    pub elapsed: Duration,
    /// The delay waited before this attempt (zero before the first).
    pub previous_delay: Duration,
    /// Time left before the request's own deadline (set by a timeout layer outside, carried
    /// in the request), if it has one: a retry whose wait would pass it is not made, and
    /// takes nothing from the budget.
    pub time_left: Option<Duration>,
}

impl Attempt {
    /// A transient failure of attempt `number` of a replay-safe, replayable request, with
    /// nothing asked by the server and no time spent.
    pub fn transient(number: u32) -> Self {
        Self {
            number,
            transient: true,
            replay_safe: true,
            replayable: true,
            server_delay: None,
            server_forbids: false,
            elapsed: Duration::ZERO,
            previous_delay: Duration::ZERO,
            time_left: None,
        }
    }
}

/// Why a request is not retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GiveUp {
    /// The failure is fatal: retrying will not help (a programmer error, a 4xx).
    Fatal,
    /// Not idempotent and no idempotency key: a retry could do the work twice.
    NotReplaySafe,
    /// The request (a streaming or oversized body) cannot be sent again.
    NotReplayable,
    /// The server said not to retry.
    ServerSaidNo,
    /// Every allowed attempt was made.
    AttemptsExhausted,
    /// The server asked for a longer wait than the caller allows.
    ServerDelayTooLong {
        /// What the server asked for.
        asked: Duration,
        /// The most the caller allows.
        cap: Duration,
    },
    /// Waiting for the retry would pass the overall deadline.
    DeadlineWouldPass,
    /// The retry budget is spent.
    BudgetExhausted,
    /// The asynchronous hook that prepares a retry ([`on_retry`](crate::hook::on_retry))
    /// failed: its error is the last error.
    HookFailed,
}

impl GiveUp {
    /// A lowercase name, for metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            GiveUp::Fatal => "fatal",
            GiveUp::NotReplaySafe => "not_replay_safe",
            GiveUp::NotReplayable => "not_replayable",
            GiveUp::ServerSaidNo => "server_said_no",
            GiveUp::AttemptsExhausted => "attempts_exhausted",
            GiveUp::ServerDelayTooLong { .. } => "server_delay_too_long",
            GiveUp::DeadlineWouldPass => "deadline_would_pass",
            GiveUp::BudgetExhausted => "budget_exhausted",
            GiveUp::HookFailed => "hook_failed",
        }
    }
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GiveUp::Fatal => f.write_str("the failure is not transient"),
            GiveUp::NotReplaySafe => {
                f.write_str("the request is not idempotent and carries no idempotency key")
            }
            GiveUp::NotReplayable => f.write_str("the request body cannot be sent again"),
            GiveUp::ServerSaidNo => f.write_str("the server said not to retry"),
            GiveUp::AttemptsExhausted => f.write_str("every allowed attempt was made"),
            GiveUp::ServerDelayTooLong { asked, cap } => write!(
                f,
                "the server asked to wait {asked:?}, more than the {cap:?} allowed"
            ),
            GiveUp::DeadlineWouldPass => f.write_str("the retry would pass the deadline"),
            GiveUp::BudgetExhausted => f.write_str("the retry budget is spent"),
            GiveUp::HookFailed => f.write_str("preparing the retry failed"),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Retry after waiting `after`.
    Retry {
        /// How long to wait first.
        after: Duration,
    },
    /// Give up, for this reason.
    GiveUp(GiveUp),
}

/// The retry limits. Build with [`RetryPolicy::builder`].
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    name: std::sync::Arc<str>,
    max_attempts: u32,
    backoff: Backoff,
    budget: Option<RetryBudget>,
    deadline: Option<Duration>,
    attempt_timeout: Option<Duration>,
    max_server_delay: Duration,
}

impl RetryPolicy {
    /// A builder: 3 attempts, the default [`Backoff`], no budget, no deadline, and a server
    /// may ask for up to 30 s.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            policy: RetryPolicy {
                name: std::sync::Arc::from("default"),
                max_attempts: 3,
                backoff: Backoff::default(),
                budget: None,
                deadline: None,
                attempt_timeout: None,
                max_server_delay: Duration::from_secs(30),
            },
        }
    }

    /// The name, from [`RetryPolicyBuilder::name`].
    pub fn name(&self) -> &std::sync::Arc<str> {
        &self.name
    }

    /// The budget, if any; the adapter [deposits](RetryBudget::deposit) each new request.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    /// The per-attempt timeout, if any.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    /// `true` if the policy has an overall deadline (then the adapter times the attempts).
    pub fn has_deadline(&self) -> bool {
        self.deadline.is_some()
    }

    /// The most attempts per request.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Decides, with a fresh random sample for the jitter.
    pub fn decide(&self, attempt: &Attempt) -> Decision {
        self.decide_with(attempt, fastrand::f64())
    }

    /// Decides, with `r` (uniform in `[0, 1)`) as the jitter's random sample.
    pub fn decide_with(&self, attempt: &Attempt, r: f64) -> Decision {
        let give_up = Decision::GiveUp;
        if !attempt.transient {
            return give_up(GiveUp::Fatal);
        }
        if !attempt.replay_safe {
            return give_up(GiveUp::NotReplaySafe);
        }
        if !attempt.replayable {
            return give_up(GiveUp::NotReplayable);
        }
        if attempt.server_forbids {
            return give_up(GiveUp::ServerSaidNo);
        }
        if attempt.number >= self.max_attempts {
            return give_up(GiveUp::AttemptsExhausted);
        }
        let backoff = self
            .backoff
            .delay_with(attempt.number, attempt.previous_delay, r);
        // Never wait longer than the caller allows, never shorter than the server asked.
        let after = match attempt
            .server_delay
            .map(|asked| judge_server_delay(asked, self.max_server_delay))
        {
            Some(ServerDelay::GiveUp { asked, cap }) => {
                return give_up(GiveUp::ServerDelayTooLong { asked, cap });
            }
            Some(ServerDelay::Wait(asked)) => asked.max(backoff),
            None => backoff,
        };
        if self
            .deadline
            .is_some_and(|deadline| attempt.elapsed.saturating_add(after) >= deadline)
            || attempt.time_left.is_some_and(|left| after >= left)
        {
            return give_up(GiveUp::DeadlineWouldPass);
        }
        // Last: a token is taken only for a retry that will be made.
        if self.budget.as_ref().is_some_and(|b| !b.try_withdraw()) {
            return give_up(GiveUp::BudgetExhausted);
        }
        Decision::Retry { after }
    }
}

/// Builds a [`RetryPolicy`]; [`build`](Self::build) validates every field.
#[derive(Debug, Clone)]
pub struct RetryPolicyBuilder {
    policy: RetryPolicy,
}

impl RetryPolicyBuilder {
    /// The name in tracing events and the `name` label of the retry metrics (default
    /// `"default"`).
    pub fn name(mut self, name: impl Into<std::sync::Arc<str>>) -> Self {
        self.policy.name = name.into();
        self
    }

    /// The most attempts per request, the first included (1..=100; default 3).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.policy.max_attempts = n;
        self
    }

    /// The waits between attempts (default: exponential from 1 s, full jitter, cap 10 s).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policy.backoff = backoff;
        self
    }

    /// A budget that retries withdraw from (shared by every clone of it).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.policy.budget = Some(budget);
        self
    }

    /// An overall deadline from the first attempt: no retry whose wait would pass it.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.policy.deadline = Some(deadline);
        self
    }

    /// Cancels an attempt that takes longer than `timeout`; a timed-out attempt is a transient
    /// failure (retried like a reset connection).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.policy.attempt_timeout = Some(timeout);
        self
    }

    /// The longest wait a server may ask for; above it, give up at once (default 30 s).
    pub fn max_server_delay(mut self, cap: Duration) -> Self {
        self.policy.max_server_delay = cap;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<RetryPolicy, ConfigError> {
        let p = self.policy;
        if !(1..=100).contains(&p.max_attempts) {
            return Err(ConfigError::new(
                COMPONENT,
                "max_attempts",
                format!("must be in 1..=100, got {}", p.max_attempts),
            ));
        }
        if p.attempt_timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                COMPONENT,
                "attempt_timeout",
                "must be greater than zero, got 0s",
            ));
        }
        if p.deadline.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                COMPONENT,
                "deadline",
                "must be greater than zero, got 0s",
            ));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::{Delays, Jitter};
    use rampart_core::clock::ManualClock;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn policy() -> RetryPolicyBuilder {
        RetryPolicy::builder().max_attempts(4).backoff(
            Backoff::builder()
                .delays(Delays::Exponential {
                    base: secs(1),
                    factor: 2.0,
                })
                .jitter(Jitter::None)
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn retries_transient_failures_with_growing_waits_until_the_attempts_run_out() {
        let p = policy().build().unwrap();
        let waits: Vec<_> = (1..=4).map(|n| p.decide(&Attempt::transient(n))).collect();
        assert_eq!(
            waits,
            [
                Decision::Retry { after: secs(1) },
                Decision::Retry { after: secs(2) },
                Decision::Retry { after: secs(4) },
                Decision::GiveUp(GiveUp::AttemptsExhausted),
            ]
        );
    }

    #[test]
    fn the_first_reason_that_applies_wins() {
        let p = policy().build().unwrap();
        let fatal = Attempt {
            transient: false,
            replay_safe: false,
            ..Attempt::transient(9)
        };
        assert_eq!(p.decide(&fatal), Decision::GiveUp(GiveUp::Fatal));
        let post = Attempt {
            replay_safe: false,
            ..Attempt::transient(1)
        };
        assert_eq!(p.decide(&post), Decision::GiveUp(GiveUp::NotReplaySafe));
        let stream = Attempt {
            replayable: false,
            ..Attempt::transient(1)
        };
        assert_eq!(p.decide(&stream), Decision::GiveUp(GiveUp::NotReplayable));
        let told = Attempt {
            server_forbids: true,
            ..Attempt::transient(1)
        };
        assert_eq!(p.decide(&told), Decision::GiveUp(GiveUp::ServerSaidNo));
    }

    #[test]
    fn server_delays_are_honoured_within_the_cap() {
        let p = policy().max_server_delay(secs(20)).build().unwrap();
        let asked = |d| Attempt {
            server_delay: Some(d),
            ..Attempt::transient(3)
        };
        assert_eq!(
            p.decide(&asked(secs(1))),
            Decision::Retry { after: secs(4) },
            "never shorter than our own backoff either"
        );
        assert_eq!(
            p.decide(&asked(secs(20))),
            Decision::Retry { after: secs(20) }
        );
        assert_eq!(
            p.decide(&asked(secs(21))),
            Decision::GiveUp(GiveUp::ServerDelayTooLong {
                asked: secs(21),
                cap: secs(20)
            })
        );
    }

    #[test]
    fn no_retry_waits_past_the_deadline() {
        let p = policy().deadline(secs(10)).build().unwrap();
        let at = |elapsed| Attempt {
            elapsed,
            ..Attempt::transient(3)
        };
        assert_eq!(p.decide(&at(secs(5))), Decision::Retry { after: secs(4) });
        assert_eq!(
            p.decide(&at(secs(6))),
            Decision::GiveUp(GiveUp::DeadlineWouldPass)
        );
    }

    #[test]
    fn a_spent_budget_stops_retries_and_a_refused_retry_takes_nothing() {
        let clock = ManualClock::new();
        let budget = RetryBudget::builder()
            .ratio(0.5)
            .min_per_sec(0)
            .clock(clock.shared())
            .build()
            .unwrap();
        let p = policy().budget(budget.clone()).build().unwrap();
        budget.deposit();
        budget.deposit();
        assert_eq!(
            p.decide(&Attempt::transient(1)),
            Decision::Retry { after: secs(1) }
        );
        assert_eq!(
            p.decide(&Attempt::transient(1)),
            Decision::GiveUp(GiveUp::BudgetExhausted)
        );
        let fatal = Attempt {
            transient: false,
            ..Attempt::transient(1)
        };
        budget.deposit();
        budget.deposit();
        let _ = p.decide(&fatal);
        assert_eq!(budget.available(), 1, "a fatal failure withdrew nothing");
    }

    #[test]
    fn bad_configuration_names_the_field() {
        let field = |b: RetryPolicyBuilder| b.build().unwrap_err().field();
        assert_eq!(
            field(RetryPolicy::builder().max_attempts(0)),
            "max_attempts"
        );
        assert_eq!(
            field(RetryPolicy::builder().max_attempts(101)),
            "max_attempts"
        );
        assert_eq!(
            field(RetryPolicy::builder().deadline(Duration::ZERO)),
            "deadline"
        );
    }
}

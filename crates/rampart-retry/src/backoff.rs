//! How long to wait before each retry.
//!
//! A [`Backoff`] is a validated pair of a growth curve ([`Delays`]) and a [`Jitter`], capped by
//! a maximum delay. It is plain data and a pure function of the retry number, the previous delay
//! and a random sample, so it is tested without a clock or a runtime.
//!
//! ```
//! use std::time::Duration;
//! use rampart_retry::backoff::{Backoff, Delays, Jitter};
//!
//! let backoff = Backoff::builder()
//!     .delays(Delays::Exponential { base: Duration::from_secs(1), factor: 2.0 })
//!     .jitter(Jitter::None)
//!     .max_delay(Duration::from_secs(10))
//!     .build()?;
//! let waits: Vec<_> = (1..=5).map(|n| backoff.nominal(n).as_secs()).collect();
//! assert_eq!(waits, [1, 2, 4, 8, 10]);
//! # Ok::<(), rampart_core::error::ConfigError>(())
//! ```
//!
//! # Jitter
//!
//! Jitter spreads the retries of many clients that failed at the same moment, so that they
//! don't come back at the same moment (the "thundering herd"). With `d` the nominal delay of the
//! retry (already capped) and `r` uniform in `[0, 1)`:
//!
//! | jitter | delay | use |
//! |---|---|---|
//! | [`Jitter::None`] | `d` | tests, or a single client |
//! | [`Jitter::Full`] (default) | `r × d` | the least contention overall |
//! | [`Jitter::Equal`] | `d/2 + r × d/2` | keeps at least half the wait |
//! | [`Jitter::Decorrelated`] | `min(cap, base + r × (3 × previous − base))` | grows from the previous delay rather than the retry number |
//!
//! (After "Exponential Backoff And Jitter", AWS Architecture Blog, 2015.)

use std::{fmt, sync::Arc, time::Duration};

use rampart_core::error::ConfigError;

const COMPONENT: &str = "retry backoff";

/// The growth curve of the nominal delay, by retry number `n` (1 for the first retry).
#[derive(Clone)]
pub enum Delays {
    /// Always `delay`.
    Constant(Duration),
    /// `base + (n − 1) × step`.
    Linear {
        /// The first delay.
        base: Duration,
        /// Added for each further retry.
        step: Duration,
    },
    /// `base × factor^(n − 1)`.
    Exponential {
        /// The first delay.
        base: Duration,
        /// Growth per retry (at least 1).
        factor: f64,
    },
    /// A function of your own from the retry number to the delay (still capped and jittered).
    Custom(Arc<dyn Fn(u32) -> Duration + Send + Sync>),
}

impl fmt::Debug for Delays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delays::Constant(d) => f.debug_tuple("Constant").field(d).finish(),
            Delays::Linear { base, step } => f
                .debug_struct("Linear")
                .field("base", base)
                .field("step", step)
                .finish(),
            Delays::Exponential { base, factor } => f
                .debug_struct("Exponential")
                .field("base", base)
                .field("factor", factor)
                .finish(),
            Delays::Custom(_) => f.debug_tuple("Custom").finish_non_exhaustive(),
        }
    }
}

impl Delays {
    /// The first delay: the floor of decorrelated jitter.
    fn base(&self) -> Duration {
        match self {
            Delays::Constant(d) => *d,
            Delays::Linear { base, .. } | Delays::Exponential { base, .. } => *base,
            Delays::Custom(f) => f(1),
        }
    }
}

/// How the nominal delay is spread at random; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// No randomness.
    None,
    /// Uniform in `[0, d]`.
    #[default]
    Full,
    /// Uniform in `[d/2, d]`.
    Equal,
    /// Uniform in `[base, 3 × previous]`, capped.
    Decorrelated,
}

/// A validated backoff: delays, jitter and a cap. Build one with [`Backoff::builder`].
#[derive(Debug, Clone)]
pub struct Backoff {
    delays: Delays,
    jitter: Jitter,
    max_delay: Duration,
}

impl Default for Backoff {
    /// Exponential from 1 s, doubling, full jitter, capped at 10 s.
    fn default() -> Self {
        Self {
            delays: Delays::Exponential {
                base: Duration::from_secs(1),
                factor: 2.0,
            },
            jitter: Jitter::Full,
            max_delay: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// A builder with the [defaults](Backoff::default).
    pub fn builder() -> BackoffBuilder {
        BackoffBuilder {
            backoff: Backoff::default(),
        }
    }

    /// The cap on every delay.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The nominal (un-jittered, capped) delay before retry `n` (1 for the first retry).
    pub fn nominal(&self, n: u32) -> Duration {
        let n = n.max(1);
        let d = match &self.delays {
            Delays::Constant(d) => *d,
            Delays::Linear { base, step } => step
                .checked_mul(n - 1)
                .and_then(|s| base.checked_add(s))
                .unwrap_or(Duration::MAX),
            Delays::Exponential { base, factor } => {
                let secs = base.as_secs_f64() * factor.powi((n - 1).min(4096) as i32);
                if secs.is_finite() && secs < self.max_delay.as_secs_f64() {
                    Duration::try_from_secs_f64(secs).unwrap_or(self.max_delay)
                } else {
                    self.max_delay
                }
            }
            Delays::Custom(f) => f(n),
        };
        d.min(self.max_delay)
    }

    /// The delay before retry `n`, given the delay before the previous retry (`Duration::ZERO`
    /// before the first) and a uniform random sample `r` in `[0, 1)`. Never above the cap.
    pub fn delay_with(&self, n: u32, previous: Duration, r: f64) -> Duration {
        let r = if r.is_finite() {
            r.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // Saturating: `Duration::MAX` as an f64 rounds up past what a `Duration` holds.
        let scale =
            |d: Duration, by: f64| Duration::try_from_secs_f64(d.as_secs_f64() * by).unwrap_or(d);
        let d = match self.jitter {
            Jitter::None => self.nominal(n),
            Jitter::Full => scale(self.nominal(n), r),
            Jitter::Equal => {
                let d = self.nominal(n);
                d / 2 + scale(d / 2, r)
            }
            Jitter::Decorrelated => {
                let base = self.delays.base().min(self.max_delay);
                let previous = previous.max(base);
                let high = previous.as_secs_f64() * 3.0;
                let span = (high - base.as_secs_f64()).max(0.0);
                let secs = base.as_secs_f64() + r * span;
                if secs.is_finite() && secs < self.max_delay.as_secs_f64() {
                    Duration::try_from_secs_f64(secs).unwrap_or(self.max_delay)
                } else {
                    self.max_delay
                }
            }
        };
        d.min(self.max_delay)
    }

    /// The delay before retry `n`, with a fresh random sample.
    pub fn delay(&self, n: u32, previous: Duration) -> Duration {
        self.delay_with(n, previous, fastrand::f64())
    }
}

/// Builds a [`Backoff`]; [`build`](Self::build) validates every field.
#[derive(Debug, Clone)]
pub struct BackoffBuilder {
    backoff: Backoff,
}

impl BackoffBuilder {
    /// The growth curve (default: exponential from 1 s, doubling).
    pub fn delays(mut self, delays: Delays) -> Self {
        self.backoff.delays = delays;
        self
    }

    /// A growth curve of your own: `f(n)` is the nominal delay before retry `n` (from 1).
    pub fn delays_fn(self, f: impl Fn(u32) -> Duration + Send + Sync + 'static) -> Self {
        self.delays(Delays::Custom(Arc::new(f)))
    }

    /// The jitter (default [`Jitter::Full`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.backoff.jitter = jitter;
        self
    }

    /// The cap on every delay (default 10 s).
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.backoff.max_delay = max;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Backoff, ConfigError> {
        let b = self.backoff;
        if b.max_delay.is_zero() {
            return Err(ConfigError::new(
                COMPONENT,
                "max_delay",
                "must be greater than zero, got 0s",
            ));
        }
        match &b.delays {
            Delays::Constant(d) if d.is_zero() => {
                return Err(ConfigError::new(
                    COMPONENT,
                    "delays",
                    "a constant delay must be greater than zero, got 0s",
                ));
            }
            Delays::Linear { base, step } if base.is_zero() && step.is_zero() => {
                return Err(ConfigError::new(
                    COMPONENT,
                    "delays",
                    "a linear delay needs a base or a step greater than zero",
                ));
            }
            Delays::Exponential { base, factor } => {
                if base.is_zero() {
                    return Err(ConfigError::new(
                        COMPONENT,
                        "delays",
                        "an exponential base must be greater than zero, got 0s",
                    ));
                }
                if !(factor.is_finite() && *factor >= 1.0) {
                    return Err(ConfigError::new(
                        COMPONENT,
                        "delays",
                        format!("an exponential factor must be a finite number >= 1, got {factor}"),
                    ));
                }
            }
            _ => {}
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn exp(jitter: Jitter) -> Backoff {
        Backoff::builder()
            .delays(Delays::Exponential {
                base: secs(1),
                factor: 2.0,
            })
            .jitter(jitter)
            .max_delay(secs(10))
            .build()
            .unwrap()
    }

    #[test]
    fn curves_grow_as_documented_and_stop_at_the_cap() {
        let linear = Backoff::builder()
            .delays(Delays::Linear {
                base: secs(1),
                step: secs(3),
            })
            .jitter(Jitter::None)
            .build()
            .unwrap();
        let got: Vec<_> = (1..=5).map(|n| linear.nominal(n).as_secs()).collect();
        assert_eq!(got, [1, 4, 7, 10, 10]);
        let constant = Backoff::builder()
            .delays(Delays::Constant(Duration::from_millis(250)))
            .build()
            .unwrap();
        assert_eq!(constant.nominal(9), Duration::from_millis(250));
        let custom = Backoff::builder()
            .delays_fn(|n| Duration::from_millis(100 * u64::from(n * n)))
            .jitter(Jitter::None)
            .build()
            .unwrap();
        assert_eq!(
            custom.delay_with(3, Duration::ZERO, 0.7),
            Duration::from_millis(900)
        );
        assert_eq!(custom.nominal(100), secs(10), "capped too");
        assert_eq!(exp(Jitter::None).nominal(u32::MAX), secs(10), "no overflow");
        assert_eq!(
            exp(Jitter::None).nominal(0),
            secs(1),
            "retry 0 counts as the first"
        );
    }

    #[test]
    fn an_unbounded_cap_never_panics() {
        for jitter in [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
        ] {
            let b = Backoff::builder()
                .delays(Delays::Constant(Duration::MAX))
                .jitter(jitter)
                .max_delay(Duration::MAX)
                .build()
                .unwrap();
            for r in [0.0, 0.5, 1.0] {
                assert!(b.delay_with(3, Duration::MAX, r) <= Duration::MAX);
            }
        }
    }

    #[test]
    fn jitter_kinds_cover_their_ranges() {
        let d = exp(Jitter::Full);
        assert_eq!(d.delay_with(3, Duration::ZERO, 0.0), Duration::ZERO);
        assert_eq!(d.delay_with(3, Duration::ZERO, 0.5), secs(2));
        let d = exp(Jitter::Equal);
        assert_eq!(d.delay_with(3, Duration::ZERO, 0.0), secs(2));
        assert_eq!(d.delay_with(3, Duration::ZERO, 1.0), secs(4));
        let d = exp(Jitter::Decorrelated);
        assert_eq!(
            d.delay_with(1, Duration::ZERO, 0.0),
            secs(1),
            "from the base"
        );
        assert_eq!(d.delay_with(2, secs(2), 1.0), secs(6), "up to 3 × previous");
        assert_eq!(d.delay_with(9, secs(9), 1.0), secs(10), "capped");
    }

    #[test]
    fn bad_configuration_names_the_field() {
        let field = |b: BackoffBuilder| b.build().unwrap_err().field();
        assert_eq!(
            field(Backoff::builder().max_delay(Duration::ZERO)),
            "max_delay"
        );
        assert_eq!(
            field(Backoff::builder().delays(Delays::Constant(Duration::ZERO))),
            "delays"
        );
        assert_eq!(
            field(Backoff::builder().delays(Delays::Exponential {
                base: secs(1),
                factor: 0.5
            })),
            "delays"
        );
        assert_eq!(
            field(Backoff::builder().delays(Delays::Exponential {
                base: secs(1),
                factor: f64::NAN
            })),
            "delays"
        );
        assert_eq!(
            field(Backoff::builder().delays(Delays::Linear {
                base: Duration::ZERO,
                step: Duration::ZERO
            })),
            "delays"
        );
    }

    fn jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated)
        ]
    }

    proptest! {
        #[test]
        fn every_delay_is_within_the_cap_and_its_jitter_band(
            base_ms in 1u64..5_000,
            factor in 1.0f64..4.0,
            cap_ms in 1u64..60_000,
            n in 0u32..200,
            previous_ms in 0u64..120_000,
            r in 0.0f64..1.0,
            jitter in jitter(),
        ) {
            let b = Backoff::builder()
                .delays(Delays::Exponential { base: Duration::from_millis(base_ms), factor })
                .jitter(jitter)
                .max_delay(Duration::from_millis(cap_ms))
                .build()
                .unwrap();
            let cap = Duration::from_millis(cap_ms);
            let nominal = b.nominal(n);
            let d = b.delay_with(n, Duration::from_millis(previous_ms), r);
            prop_assert!(d <= cap);
            prop_assert!(nominal <= cap);
            match jitter {
                Jitter::None => prop_assert_eq!(d, nominal),
                Jitter::Full => prop_assert!(d <= nominal),
                Jitter::Equal => prop_assert!(d >= nominal / 2 && d <= nominal),
                Jitter::Decorrelated => {
                    let base = Duration::from_millis(base_ms).min(cap);
                    prop_assert!(d >= base.min(cap) || d == cap);
                    let high = Duration::from_millis(previous_ms).max(base) * 3;
                    prop_assert!(d <= high.min(cap) + Duration::from_nanos(1));
                }
            }
        }

        #[test]
        fn nominal_delays_never_shrink(base_ms in 1u64..5_000, factor in 1.0f64..4.0, n in 1u32..500) {
            let b = Backoff::builder()
                .delays(Delays::Exponential { base: Duration::from_millis(base_ms), factor })
                .jitter(Jitter::None)
                .build()
                .unwrap();
            prop_assert!(b.nominal(n + 1) >= b.nominal(n));
        }
    }
}

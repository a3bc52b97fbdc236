//! [`Deadline`]: the time by which a call must be done, carried in a request's extensions so
//! that inner layers (retries, per-attempt timeouts) never overrun an outer deadline.
//!
//! A timeout layer puts the earlier of its own deadline and any it finds in the request; a
//! retry layer gives up rather than wait past it; a gRPC client sends what is left of it as
//! `grpc-timeout` ([`grpc_timeout`] formats the header the way the gRPC spec says).

use std::time::Duration;

use tokio::time::Instant;

/// When a call must be done by, in a request's extensions.
///
/// ```
/// use std::time::Duration;
/// use rampart_core::deadline::Deadline;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut req = http::Request::new(());
/// Deadline::after(Duration::from_secs(30)).tighten(req.extensions_mut());
/// // An inner layer with a longer timeout keeps the outer deadline.
/// let inner = Deadline::after(Duration::from_secs(60)).tighten(req.extensions_mut());
/// assert!(inner.remaining() <= Duration::from_secs(30));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline at `at`.
    pub const fn at(at: Instant) -> Self {
        Self(at)
    }

    /// A deadline `timeout` from now (tokio's clock, so paused time applies).
    pub fn after(timeout: Duration) -> Self {
        Self(crate::clock::saturating_add(Instant::now(), timeout))
    }

    /// When it is.
    pub const fn instant(&self) -> Instant {
        self.0
    }

    /// How long is left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// `true` once it has passed.
    pub fn has_passed(&self) -> bool {
        Instant::now() >= self.0
    }

    /// The deadline in `extensions`, if any.
    #[cfg(feature = "http")]
    pub fn of(extensions: &http::Extensions) -> Option<Deadline> {
        extensions.get::<Deadline>().copied()
    }

    /// Puts the earlier of `self` and the deadline already in `extensions` there, and returns
    /// it: a deadline is only ever tightened.
    #[cfg(feature = "http")]
    pub fn tighten(self, extensions: &mut http::Extensions) -> Deadline {
        // In place when an outer layer set one (no new allocation for the extension).
        match extensions.get_mut::<Deadline>() {
            Some(outer) => {
                if self < *outer {
                    *outer = self;
                }
                *outer
            }
            None => {
                extensions.insert(self);
                self
            }
        }
    }
}

/// The `grpc-timeout` header value for `remaining`: at most 8 digits and a unit, as precise as
/// fits (`"250m"` for 250 ms; `"30S"`; hours for the longest).
///
/// ```
/// use std::time::Duration;
/// use rampart_core::deadline::grpc_timeout;
///
/// assert_eq!(grpc_timeout(Duration::from_millis(250)), "250000u");
/// assert_eq!(grpc_timeout(Duration::from_secs(300)), "300000m");
/// assert_eq!(grpc_timeout(Duration::from_secs(3_000)), "3000000m");
/// assert_eq!(grpc_timeout(Duration::ZERO), "0n");
/// ```
pub fn grpc_timeout(remaining: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = remaining.as_nanos();
    // The finest unit whose count fits in 8 digits, rounding up so a deadline is never
    // extended by the rounding.
    for (unit, per) in [
        ("n", 1u128),
        ("u", 1_000),
        ("m", 1_000_000),
        ("S", 1_000_000_000),
        ("M", 60_000_000_000),
        ("H", 3_600_000_000_000),
    ] {
        let count = nanos.div_ceil(per);
        if count <= MAX {
            return format!("{count}{unit}");
        }
    }
    format!("{MAX}H")
}

/// Parses a `grpc-timeout` header value (1 to 8 digits and a unit: `H`, `M`, `S`, `m`, `u`,
/// `n`); `None` if malformed.
///
/// ```
/// use std::time::Duration;
/// use rampart_core::deadline::parse_grpc_timeout;
///
/// assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
/// assert_eq!(parse_grpc_timeout("123456789S"), None); // 9 digits
/// assert_eq!(parse_grpc_timeout("5x"), None);
/// ```
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_never_rounds_down_and_fits_eight_digits() {
        for ms in [
            0u64,
            1,
            999,
            1_000,
            99_999,
            100_000,
            86_400_000,
            u64::MAX / 4,
        ] {
            let d = Duration::from_millis(ms);
            let s = grpc_timeout(d);
            let (digits, unit) = s.split_at(s.len() - 1);
            assert!(digits.len() <= 8, "{s}");
            let per: u128 = match unit {
                "n" => 1,
                "u" => 1_000,
                "m" => 1_000_000,
                "S" => 1_000_000_000,
                "M" => 60_000_000_000,
                "H" => 3_600_000_000_000,
                _ => panic!("{s}"),
            };
            let back = digits.parse::<u128>().unwrap() * per;
            assert_eq!(
                parse_grpc_timeout(&s).map(|d| d.as_nanos()),
                Some(back),
                "parses back"
            );
            assert!(
                back >= d.as_nanos().min(99_999_999 * 3_600_000_000_000),
                "{s} for {d:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_is_only_tightened() {
        let mut ext = http::Extensions::new();
        let outer = Deadline::after(Duration::from_secs(10)).tighten(&mut ext);
        let inner = Deadline::after(Duration::from_secs(20)).tighten(&mut ext);
        assert_eq!(inner, outer);
        let tighter = Deadline::after(Duration::from_secs(5)).tighten(&mut ext);
        assert!(tighter < outer);
        assert_eq!(Deadline::of(&ext), Some(tighter));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(tighter.has_passed());
        assert_eq!(tighter.remaining(), Duration::ZERO);
    }
}

//! What the server asks for: HTTP's `Retry-After` and gRPC's `grpc-retry-pushback-ms`.
//!
//! A server that sheds load often says when to come back. A polite client waits at least that
//! long, and a client with a deadline gives up rather than wait longer than its caller allowed.
//! This module reads what the server said and judges it; it keeps no state and does no I/O, and
//! the wall clock is a parameter, so every decision is testable.
//!
//! - `parse_retry_after` (feature `http`): an RFC 9110 `Retry-After` value, delta-seconds or an
//!   HTTP-date, as a [`Duration`] from `now`.
//! - [`parse_pushback`]: a gRFC A6 `grpc-retry-pushback-ms` value, as a [`Pushback`]: retry
//!   after a delay, or don't retry at all.
//! - `retry_after` and `pushback` (feature `http`): the same, read from an `http::HeaderMap`.
//! - [`judge_server_delay`]: wait as asked, or give up because the server asked for more than
//!   the configured cap.
//!
//! Every value these functions return is bounded: at most `MAX_RETRY_AFTER` (about 136
//! years) for `Retry-After` and at most [`MAX_PUSHBACK`] (about 24.8 days) for pushback. Hostile
//! or broken input (huge numbers, binary garbage) never panics and never overflows.
//!
//! ```
//! use std::time::Duration;
//! use rampart_retry::server_delay::{judge_server_delay, parse_pushback, Pushback, ServerDelay};
//!
//! let cap = Duration::from_secs(5);
//! match parse_pushback(b"250") {
//!     Pushback::RetryAfter(asked) => {
//!         assert_eq!(judge_server_delay(asked, cap), ServerDelay::Wait(asked));
//!     }
//!     Pushback::DontRetry => unreachable!("250 ms is a valid pushback"),
//! }
//! // A negative or unreadable pushback is the server saying "don't retry".
//! assert_eq!(parse_pushback(b"-1"), Pushback::DontRetry);
//! ```
//!
//! With the `http` feature (on by default), straight from a response's headers:
//!
//! ```
//! # #[cfg(feature = "http")] {
//! use std::time::{Duration, SystemTime};
//! use rampart_retry::server_delay::{judge_server_delay, retry_after, ServerDelay};
//!
//! let response = http::Response::builder()
//!     .status(503)
//!     .header(http::header::RETRY_AFTER, "120")
//!     .body(())
//!     .unwrap();
//! let asked = retry_after(response.headers(), SystemTime::now())
//!     .expect("the header is there")
//!     .expect("and well formed");
//! assert_eq!(asked, Duration::from_secs(120));
//! assert_eq!(
//!     judge_server_delay(asked, Duration::from_secs(30)),
//!     ServerDelay::GiveUp { asked, cap: Duration::from_secs(30) },
//! );
//! # }
//! ```

use std::time::Duration;

#[cfg(feature = "http")]
pub use self::retry_after_impl::*;

/// The longest pushback: `i32::MAX` milliseconds, about 24.8 days.
///
/// gRFC A6 defines the value as a signed 32-bit integer, so no valid pushback is longer.
pub const MAX_PUSHBACK: Duration = Duration::from_millis(i32::MAX as u64);

/// What a gRPC server's `grpc-retry-pushback-ms` says about retrying.
///
/// Returned by [`parse_pushback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pushback {
    /// Retry, but not before this long. At most [`MAX_PUSHBACK`].
    ///
    /// gRFC A6 says this delay *replaces* the backoff for the next attempt, and that the
    /// attempt after it starts again from the initial backoff.
    RetryAfter(Duration),
    /// The server asked the client not to retry this call at all: the value was negative or
    /// could not be read.
    DontRetry,
}

/// Parses a `grpc-retry-pushback-ms` value, as defined by
/// [gRFC A6](https://github.com/grpc/proposal/blob/master/A6-client-retries.md#pushback).
///
/// A6 defines the value as "an ASCII encoded signed 32-bit integer with no unnecessary leading
/// zeros that represents how many milliseconds to wait before sending a retry", and adds: "If
/// the value for pushback is negative or unparseable, then it will be seen as the server asking
/// the client not to retry at all." So this function cannot fail; it returns:
///
/// - [`Pushback::RetryAfter`] for `0` to `2147483647` (`i32::MAX`, see [`MAX_PUSHBACK`]), and
///   for `-0`, which is zero. Leading zeros and leading or trailing ASCII whitespace are
///   tolerated.
/// - [`Pushback::DontRetry`] for a negative number, and for anything that is not a signed
///   32-bit integer: empty, not UTF-8, a `+` sign, a fraction, trailing junk, or a number
///   outside the `i32` range (which therefore does not saturate; a server that means "not for
///   a long while" and overflows `i32` is read as "don't retry", as A6 says).
///
/// ```
/// use std::time::Duration;
/// use rampart_retry::server_delay::{parse_pushback, Pushback};
///
/// assert_eq!(parse_pushback(b"250"), Pushback::RetryAfter(Duration::from_millis(250)));
/// assert_eq!(parse_pushback(b"0"), Pushback::RetryAfter(Duration::ZERO));
/// assert_eq!(parse_pushback(b"-1"), Pushback::DontRetry);
/// assert_eq!(parse_pushback(b"soon"), Pushback::DontRetry);
/// assert_eq!(parse_pushback(b"99999999999"), Pushback::DontRetry); // not an i32
/// ```
#[must_use]
pub fn parse_pushback(value: &[u8]) -> Pushback {
    let value = value.trim_ascii();
    let (negative, digits) = match value.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, value),
    };
    let Some(millis) = parse_digits(digits) else {
        return Pushback::DontRetry;
    };
    if negative && millis > 0 {
        return Pushback::DontRetry;
    }
    if millis > i32::MAX as u64 {
        return Pushback::DontRetry;
    }
    Pushback::RetryAfter(Duration::from_millis(millis))
}

/// What to do with a delay the server asked for, given the longest the caller allows.
///
/// Returned by [`judge_server_delay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerDelay {
    /// Wait this long (exactly what the server asked) before the next attempt. A retry policy
    /// may wait longer, e.g. when its own backoff is longer, but never shorter.
    Wait(Duration),
    /// The server asked for more than the cap allows: don't retry, and report the failure now
    /// rather than sleep past what the caller allowed or retry before the server is ready.
    GiveUp {
        /// The delay the server asked for.
        asked: Duration,
        /// The longest delay the caller allows (`max_server_delay`).
        cap: Duration,
    },
}

/// Judges a server's asked delay against the configured cap (`max_server_delay`).
///
/// The rule: never wait longer than the caller allowed, and never retry sooner than the server
/// asked. When both can hold (`asked <= cap`) the answer is [`ServerDelay::Wait`]`(asked)`;
/// when they can't, it is [`ServerDelay::GiveUp`]. A delay exactly equal to the cap is waited
/// for; a cap of zero honours only "retry now".
///
/// ```
/// use std::time::Duration;
/// use rampart_retry::server_delay::{judge_server_delay, ServerDelay};
///
/// let cap = Duration::from_secs(10);
/// let ok = Duration::from_secs(10);
/// let too_long = Duration::from_secs(11);
/// assert_eq!(judge_server_delay(ok, cap), ServerDelay::Wait(ok));
/// assert_eq!(
///     judge_server_delay(too_long, cap),
///     ServerDelay::GiveUp { asked: too_long, cap },
/// );
/// ```
#[must_use]
pub fn judge_server_delay(asked: Duration, cap: Duration) -> ServerDelay {
    if asked <= cap {
        ServerDelay::Wait(asked)
    } else {
        ServerDelay::GiveUp { asked, cap }
    }
}

/// The value of a non-empty run of ASCII digits, saturating at `u64::MAX`; `None` when `digits`
/// is empty or holds anything but `0`-`9`. Linear in the length, whatever the length.
fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit()
            .then(|| acc.saturating_mul(10).saturating_add(u64::from(b - b'0')))
    })
}

#[cfg(feature = "http")]
mod retry_after_impl {
    use std::{
        error::Error,
        fmt,
        time::{Duration, SystemTime},
    };

    use rampart_core::header::GRPC_RETRY_PUSHBACK_MS;

    use super::{Pushback, parse_digits, parse_pushback};

    /// The longest `Retry-After` delay: `u32::MAX` seconds, about 136 years.
    ///
    /// Longer delta-seconds saturate to it, and so does an HTTP-date further in the future
    /// (HTTP-dates go up to the year 9999). RFC 9111 §1.2.2 asks caches to treat an overflowing
    /// delta-seconds the same way, as the greatest value they can represent. It is far beyond
    /// any sensible cap for [`judge_server_delay`](super::judge_server_delay), and small enough
    /// that adding it to an `Instant` or handing it to `tokio::time::sleep` does not overflow.
    pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(u32::MAX as u64);

    /// Why a `Retry-After` value could not be read.
    ///
    /// Small and `Copy`: it carries no copy of the value (which came from the network and may
    /// be large or hostile), so making one never allocates. Its `Display` is a short lowercase
    /// sentence, e.g. `retry-after is a negative number`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[non_exhaustive]
    pub enum RetryAfterError {
        /// The value is empty or only whitespace.
        Empty,
        /// The value is a minus sign followed by digits (`-5`, also `-0`): delta-seconds has no
        /// sign.
        Negative,
        /// The value holds bytes outside ASCII, which neither form allows; this includes every
        /// value that is not UTF-8.
        NonAscii,
        /// The value is neither delta-seconds nor an HTTP-date: `1.5`, `12abc`, `+5`, `soon`, a
        /// date with a wrong weekday or in an unknown format, ….
        Malformed,
    }

    impl fmt::Display for RetryAfterError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                RetryAfterError::Empty => "retry-after is empty",
                RetryAfterError::Negative => "retry-after is a negative number",
                RetryAfterError::NonAscii => "retry-after contains non-ascii bytes",
                RetryAfterError::Malformed => {
                    "retry-after is neither delta-seconds nor an http-date"
                }
            })
        }
    }

    impl Error for RetryAfterError {}

    /// Parses a `Retry-After` value
    /// ([RFC 9110 §10.2.3](https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3)) into how
    /// long to wait from `now`.
    ///
    /// `Retry-After = HTTP-date / delay-seconds`, where:
    ///
    /// - delay-seconds is `1*DIGIT`, a count of seconds. Leading zeros are fine; a value above
    ///   [`MAX_RETRY_AFTER`] (any number of digits) saturates to it.
    /// - HTTP-date is the IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, or one of the obsolete
    ///   forms recipients must still accept: RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT` and
    ///   asctime `Sun Nov  6 08:49:37 1994` (parsed by `httpdate`, which also checks the
    ///   weekday). The result is the date minus `now`, to the nanosecond; a date at or before
    ///   `now` gives [`Duration::ZERO`] (retry now), and one more than [`MAX_RETRY_AFTER`] ahead
    ///   saturates to it.
    ///
    /// Leading and trailing ASCII whitespace is ignored. Anything else is a [`RetryAfterError`].
    ///
    /// `now` is the wall clock (`SystemTime::now()` in production): an HTTP-date is wall-clock
    /// time, and passing it in keeps the function pure. Clock skew between client and server
    /// shows up in the result; [`judge_server_delay`](super::judge_server_delay) bounds it.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use rampart_retry::server_delay::{parse_retry_after, RetryAfterError};
    ///
    /// // Sun, 06 Nov 1994 08:49:37 GMT
    /// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
    ///
    /// assert_eq!(parse_retry_after(b"120", now), Ok(Duration::from_secs(120)));
    /// assert_eq!(
    ///     parse_retry_after(b"Sun, 06 Nov 1994 08:50:07 GMT", now),
    ///     Ok(Duration::from_secs(30)),
    /// );
    /// assert_eq!(parse_retry_after(b"Sat, 05 Nov 1994 08:49:37 GMT", now), Ok(Duration::ZERO));
    /// assert_eq!(parse_retry_after(b"-5", now), Err(RetryAfterError::Negative));
    /// assert_eq!(
    ///     parse_retry_after(b"1.5", now).unwrap_err().to_string(),
    ///     "retry-after is neither delta-seconds nor an http-date",
    /// );
    /// ```
    pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Result<Duration, RetryAfterError> {
        let Ok(text) = std::str::from_utf8(value) else {
            return Err(RetryAfterError::NonAscii);
        };
        if !text.is_ascii() {
            return Err(RetryAfterError::NonAscii);
        }
        let text = text.trim_ascii();
        let bytes = text.as_bytes();
        match bytes.first() {
            None => Err(RetryAfterError::Empty),
            Some(b'0'..=b'9') => parse_digits(bytes)
                .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER))
                .ok_or(RetryAfterError::Malformed),
            Some(b'-') if parse_digits(&bytes[1..]).is_some() => Err(RetryAfterError::Negative),
            Some(_) => {
                let date =
                    httpdate::parse_http_date(text).map_err(|_| RetryAfterError::Malformed)?;
                Ok(date
                    .duration_since(now)
                    .map_or(Duration::ZERO, |ahead| ahead.min(MAX_RETRY_AFTER)))
            }
        }
    }

    /// The server's `Retry-After`, read from response headers with [`parse_retry_after`].
    ///
    /// `None` when the header is absent; `Some(Err(_))` when it is there but unreadable, which a
    /// retry policy may log and then treat as absent. `Retry-After` is a single-value field; if
    /// a response repeats it anyway, the first value counts and the others are ignored.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use http::{HeaderMap, HeaderValue, header::RETRY_AFTER};
    /// use rampart_retry::server_delay::{retry_after, RetryAfterError};
    ///
    /// let mut headers = HeaderMap::new();
    /// assert_eq!(retry_after(&headers, SystemTime::now()), None);
    ///
    /// headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
    /// assert_eq!(retry_after(&headers, SystemTime::now()), Some(Ok(Duration::from_secs(7))));
    ///
    /// headers.insert(RETRY_AFTER, HeaderValue::from_static("later"));
    /// assert_eq!(
    ///     retry_after(&headers, SystemTime::now()),
    ///     Some(Err(RetryAfterError::Malformed)),
    /// );
    /// ```
    pub fn retry_after(
        headers: &http::HeaderMap,
        now: SystemTime,
    ) -> Option<Result<Duration, RetryAfterError>> {
        headers
            .get(http::header::RETRY_AFTER)
            .map(|value| parse_retry_after(value.as_bytes(), now))
    }

    /// The server's `grpc-retry-pushback-ms`, read with [`parse_pushback`](super::parse_pushback).
    ///
    /// `None` when there is no pushback (let the backoff decide). Pass the trailers of a gRPC
    /// response, or its headers when it is Trailers-Only (an error before any message, where
    /// the status and the pushback travel in the headers). If the key is repeated, the first
    /// value counts.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::{HeaderMap, HeaderValue};
    /// use rampart_core::header::GRPC_RETRY_PUSHBACK_MS;
    /// use rampart_retry::server_delay::{pushback, Pushback};
    ///
    /// let mut trailers = HeaderMap::new();
    /// assert_eq!(pushback(&trailers), None);
    ///
    /// trailers.insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static("1500"));
    /// assert_eq!(pushback(&trailers), Some(Pushback::RetryAfter(Duration::from_millis(1500))));
    ///
    /// trailers.insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static("-1"));
    /// assert_eq!(pushback(&trailers), Some(Pushback::DontRetry));
    /// ```
    pub fn pushback(headers: &http::HeaderMap) -> Option<Pushback> {
        headers
            .get(GRPC_RETRY_PUSHBACK_MS)
            .map(|value| parse_pushback(value.as_bytes()))
    }
}

#[cfg(test)]
mod tests;

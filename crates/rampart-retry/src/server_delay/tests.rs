use super::*;
use proptest::prelude::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---- pushback (gRFC A6) ----

#[test]
fn pushback_non_negative_millis_is_a_delay() {
    assert_eq!(parse_pushback(b"0"), Pushback::RetryAfter(Duration::ZERO));
    assert_eq!(parse_pushback(b"250"), Pushback::RetryAfter(ms(250)));
    assert_eq!(parse_pushback(b" 250\t"), Pushback::RetryAfter(ms(250)));
    assert_eq!(parse_pushback(b"000250"), Pushback::RetryAfter(ms(250)));
    assert_eq!(parse_pushback(b"-0"), Pushback::RetryAfter(Duration::ZERO));
}

#[test]
fn pushback_negative_or_malformed_means_dont_retry() {
    for value in [
        &b"-1"[..],
        b"-250",
        b"-99999999999999999999999",
        b"x",
        b"",
        b"   ",
        b"-",
        b"+5",
        b"1.5",
        b"12ms",
        b"1 2",
        b"\xff\xfe",
        "２５０".as_bytes(),
    ] {
        assert_eq!(parse_pushback(value), Pushback::DontRetry, "{value:?}");
    }
}

#[test]
fn pushback_is_bounded_by_i32_millis() {
    assert_eq!(
        parse_pushback(b"2147483647"),
        Pushback::RetryAfter(MAX_PUSHBACK)
    );
    assert_eq!(MAX_PUSHBACK, ms(2_147_483_647));
    // Outside the i32 range is "unparseable" in A6's words: don't retry.
    assert_eq!(parse_pushback(b"2147483648"), Pushback::DontRetry);
    assert_eq!(parse_pushback(b"18446744073709551616"), Pushback::DontRetry);
    let huge = "9".repeat(100_000);
    assert_eq!(parse_pushback(huge.as_bytes()), Pushback::DontRetry);
    // Leading zeros don't count towards the size.
    let padded = format!("{}42", "0".repeat(100_000));
    assert_eq!(
        parse_pushback(padded.as_bytes()),
        Pushback::RetryAfter(ms(42))
    );
}

// ---- judge_server_delay ----

#[test]
fn judge_waits_up_to_and_including_the_cap() {
    let cap = Duration::from_secs(10);
    assert_eq!(
        judge_server_delay(Duration::ZERO, cap),
        ServerDelay::Wait(Duration::ZERO)
    );
    assert_eq!(judge_server_delay(cap, cap), ServerDelay::Wait(cap));
    let just_over = cap + Duration::from_nanos(1);
    assert_eq!(
        judge_server_delay(just_over, cap),
        ServerDelay::GiveUp {
            asked: just_over,
            cap
        }
    );
}

#[test]
fn judge_extreme_caps() {
    // A zero cap honours only "retry now".
    assert_eq!(
        judge_server_delay(Duration::ZERO, Duration::ZERO),
        ServerDelay::Wait(Duration::ZERO)
    );
    assert_eq!(
        judge_server_delay(Duration::from_nanos(1), Duration::ZERO),
        ServerDelay::GiveUp {
            asked: Duration::from_nanos(1),
            cap: Duration::ZERO
        }
    );
    assert_eq!(
        judge_server_delay(Duration::MAX, Duration::MAX),
        ServerDelay::Wait(Duration::MAX)
    );
}

proptest! {
    #[test]
    fn pushback_never_panics_and_stays_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Pushback::RetryAfter(d) = parse_pushback(&bytes) {
            prop_assert!(d <= MAX_PUSHBACK);
        }
    }

    #[test]
    fn pushback_never_panics_on_strings(s in any::<String>()) {
        if let Pushback::RetryAfter(d) = parse_pushback(s.as_bytes()) {
            prop_assert!(d <= MAX_PUSHBACK);
        }
    }

    #[test]
    fn pushback_round_trips_any_i32(n in any::<i32>()) {
        let expected = match u64::try_from(n) {
            Ok(millis) => Pushback::RetryAfter(ms(millis)),
            Err(_) => Pushback::DontRetry,
        };
        prop_assert_eq!(parse_pushback(n.to_string().as_bytes()), expected);
    }

    #[test]
    fn judge_never_waits_past_the_cap_nor_short_of_the_ask(
        asked in any::<u64>(),
        cap in any::<u64>(),
    ) {
        let (asked, cap) = (Duration::from_nanos(asked), Duration::from_nanos(cap));
        match judge_server_delay(asked, cap) {
            ServerDelay::Wait(d) => prop_assert!(d == asked && d <= cap),
            ServerDelay::GiveUp { asked: a, cap: c } => {
                prop_assert!(a == asked && c == cap && asked > cap)
            }
        }
    }
}

#[cfg(feature = "http")]
mod http_headers {
    use super::*;
    use crate::server_delay::{
        MAX_RETRY_AFTER, RetryAfterError, parse_retry_after, pushback, retry_after,
    };
    use http::{HeaderMap, HeaderValue, header::RETRY_AFTER};
    use rampart_core::header::GRPC_RETRY_PUSHBACK_MS;
    use std::time::SystemTime;

    /// Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date.
    const NOW_SECS: u64 = 784_111_777;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn parse(value: &str) -> Result<Duration, RetryAfterError> {
        parse_retry_after(value.as_bytes(), now())
    }

    #[test]
    fn delta_seconds() {
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("120"), Ok(secs(120)));
        assert_eq!(parse("  120"), Ok(secs(120)));
        assert_eq!(parse("120  "), Ok(secs(120)));
        assert_eq!(parse("\t 120 \t"), Ok(secs(120)));
        assert_eq!(parse("0120"), Ok(secs(120)));
    }

    #[test]
    fn huge_delta_seconds_saturate() {
        assert_eq!(MAX_RETRY_AFTER, secs(u64::from(u32::MAX)));
        assert_eq!(parse("4294967295"), Ok(MAX_RETRY_AFTER));
        assert_eq!(parse("4294967296"), Ok(MAX_RETRY_AFTER));
        assert_eq!(parse("18446744073709551616"), Ok(MAX_RETRY_AFTER));
        let huge = "9".repeat(100_000);
        assert_eq!(parse(&huge), Ok(MAX_RETRY_AFTER));
        let padded = format!("{}7", "0".repeat(100_000));
        assert_eq!(parse(&padded), Ok(secs(7)));
    }

    #[test]
    fn negative_is_its_own_error() {
        assert_eq!(parse("-1"), Err(RetryAfterError::Negative));
        assert_eq!(parse(" -120 "), Err(RetryAfterError::Negative));
        assert_eq!(parse("-0"), Err(RetryAfterError::Negative));
        assert_eq!(
            parse(&format!("-{}", "9".repeat(10_000))),
            Err(RetryAfterError::Negative)
        );
    }

    #[test]
    fn malformed_values() {
        assert_eq!(parse(""), Err(RetryAfterError::Empty));
        assert_eq!(parse(" \t "), Err(RetryAfterError::Empty));
        for value in [
            "1.5",
            "abc",
            "12abc",
            "1 2",
            "+5",
            "-",
            "--5",
            "-5s",
            "0x10",
            // a date with the wrong weekday (it was a Sunday)
            "Mon, 06 Nov 1994 08:49:37 GMT",
            // not GMT
            "Sun, 06 Nov 1994 08:49:37 UTC",
            // ISO 8601 is not an HTTP-date
            "1994-11-06T08:49:37Z",
        ] {
            assert_eq!(parse(value), Err(RetryAfterError::Malformed), "{value:?}");
        }
    }

    #[test]
    fn non_ascii_and_non_utf8() {
        assert_eq!(
            parse_retry_after(b"\xff\xfe", now()),
            Err(RetryAfterError::NonAscii)
        );
        assert_eq!(
            parse_retry_after(b"12\x80", now()),
            Err(RetryAfterError::NonAscii)
        );
        // Valid UTF-8, but full-width digits are not DIGIT.
        assert_eq!(parse("１２０"), Err(RetryAfterError::NonAscii));
    }

    #[test]
    fn errors_display_lowercase_reasons() {
        let all = [
            (RetryAfterError::Empty, "retry-after is empty"),
            (
                RetryAfterError::Negative,
                "retry-after is a negative number",
            ),
            (
                RetryAfterError::NonAscii,
                "retry-after contains non-ascii bytes",
            ),
            (
                RetryAfterError::Malformed,
                "retry-after is neither delta-seconds nor an http-date",
            ),
        ];
        for (err, text) in all {
            assert_eq!(err.to_string(), text);
            let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
            assert!(boxed.source().is_none());
        }
    }

    #[test]
    fn imf_fixdate_in_the_future_is_the_exact_distance() {
        assert_eq!(parse("Sun, 06 Nov 1994 08:51:37 GMT"), Ok(secs(120)));
        assert_eq!(parse("  Sun, 06 Nov 1994 08:51:37 GMT "), Ok(secs(120)));
        assert_eq!(parse("Mon, 07 Nov 1994 08:49:37 GMT"), Ok(secs(86_400)));
        // Sub-second precision of `now` is kept, not rounded.
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(NOW_SECS * 1000 + 250);
        assert_eq!(
            parse_retry_after(b"Sun, 06 Nov 1994 08:51:37 GMT", now),
            Ok(ms(119_750))
        );
    }

    #[test]
    fn a_date_now_or_in_the_past_means_retry_now() {
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), Ok(Duration::ZERO));
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:36 GMT"), Ok(Duration::ZERO));
        assert_eq!(parse("Thu, 01 Jan 1970 00:00:00 GMT"), Ok(Duration::ZERO));
    }

    #[test]
    fn obsolete_date_forms() {
        // RFC 850, two-digit year.
        assert_eq!(parse("Sunday, 06-Nov-94 08:51:37 GMT"), Ok(secs(120)));
        // asctime, space-padded day.
        assert_eq!(parse("Sun Nov  6 08:51:37 1994"), Ok(secs(120)));
        assert_eq!(parse("Sat Nov  5 08:51:37 1994"), Ok(Duration::ZERO));
    }

    #[test]
    fn far_future_dates_saturate() {
        assert_eq!(parse("Fri, 31 Dec 9999 23:59:59 GMT"), Ok(MAX_RETRY_AFTER));
        let before_epoch = SystemTime::UNIX_EPOCH - secs(1_000_000_000);
        assert_eq!(
            parse_retry_after(b"Fri, 31 Dec 9999 23:59:59 GMT", before_epoch),
            Ok(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_header_helper() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, now()), None);

        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers, now()), Some(Ok(secs(120))));

        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:50:37 GMT"),
        );
        assert_eq!(retry_after(&headers, now()), Some(Ok(secs(60))));

        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(
            retry_after(&headers, now()),
            Some(Err(RetryAfterError::Malformed))
        );

        // obs-text is a legal header byte but never a legal Retry-After.
        headers.insert(RETRY_AFTER, HeaderValue::from_bytes(b"1\xe9").unwrap());
        assert_eq!(
            retry_after(&headers, now()),
            Some(Err(RetryAfterError::NonAscii))
        );
    }

    #[test]
    fn repeated_retry_after_uses_the_first_value() {
        let mut headers = HeaderMap::new();
        headers.append(RETRY_AFTER, HeaderValue::from_static("5"));
        headers.append(RETRY_AFTER, HeaderValue::from_static("500"));
        assert_eq!(retry_after(&headers, now()), Some(Ok(secs(5))));

        let mut headers = HeaderMap::new();
        headers.append(RETRY_AFTER, HeaderValue::from_static("junk"));
        headers.append(RETRY_AFTER, HeaderValue::from_static("5"));
        assert_eq!(
            retry_after(&headers, now()),
            Some(Err(RetryAfterError::Malformed))
        );
    }

    #[test]
    fn pushback_header_helper() {
        let mut headers = HeaderMap::new();
        assert_eq!(pushback(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        assert_eq!(pushback(&headers), None, "Retry-After is not pushback");

        headers.insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static("250"));
        assert_eq!(pushback(&headers), Some(Pushback::RetryAfter(ms(250))));

        headers.insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static("-1"));
        assert_eq!(pushback(&headers), Some(Pushback::DontRetry));

        headers.insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static("x"));
        assert_eq!(pushback(&headers), Some(Pushback::DontRetry));

        headers.insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static(""));
        assert_eq!(pushback(&headers), Some(Pushback::DontRetry));

        headers.append(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static("100"));
        assert_eq!(
            pushback(&headers),
            Some(Pushback::DontRetry),
            "the first value counts"
        );
    }

    /// Any `now` from well before the epoch to the end of year 9999.
    fn any_now() -> impl Strategy<Value = SystemTime> {
        (-10_000_000_000i64..=253_402_300_799i64, 0u32..1_000_000_000).prop_map(|(secs, nanos)| {
            let offset = Duration::new(secs.unsigned_abs(), nanos);
            if secs < 0 {
                SystemTime::UNIX_EPOCH - offset
            } else {
                SystemTime::UNIX_EPOCH + offset
            }
        })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_and_stay_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            now in any_now(),
        ) {
            if let Ok(d) = parse_retry_after(&bytes, now) {
                prop_assert!(d <= MAX_RETRY_AFTER);
            }
        }

        #[test]
        fn random_strings_never_panic_and_stay_bounded(s in any::<String>(), now in any_now()) {
            if let Ok(d) = parse_retry_after(s.as_bytes(), now) {
                prop_assert!(d <= MAX_RETRY_AFTER);
            }
        }

        #[test]
        fn date_shaped_strings_never_panic(
            s in "[A-Za-z]{3,9},? [0-9 ]{1,2}[- ][A-Za-z]{3}[- ][0-9]{2,4} [0-9]{2}:[0-9]{2}:[0-9]{2}( GMT| [0-9]{4})?",
            now in any_now(),
        ) {
            if let Ok(d) = parse_retry_after(s.as_bytes(), now) {
                prop_assert!(d <= MAX_RETRY_AFTER);
            }
        }

        #[test]
        fn delta_seconds_round_trip_any_u32(n in any::<u32>(), pad in 0usize..4, now in any_now()) {
            let value = format!("{:pad$}{n}{:pad$}", "", "");
            prop_assert_eq!(
                parse_retry_after(value.as_bytes(), now),
                Ok(secs(u64::from(n)))
            );
        }

        #[test]
        fn any_negative_number_is_negative(n in 1u64..) {
            prop_assert_eq!(
                parse_retry_after(format!("-{n}").as_bytes(), now()),
                Err(RetryAfterError::Negative)
            );
        }

        #[test]
        fn formatted_dates_give_the_exact_distance(
            at in 0u64..=253_402_300_799,
            now in any_now(),
        ) {
            let date = SystemTime::UNIX_EPOCH + secs(at);
            let expected = date
                .duration_since(now)
                .map_or(Duration::ZERO, |d| d.min(MAX_RETRY_AFTER));
            let value = httpdate::fmt_http_date(date);
            prop_assert_eq!(parse_retry_after(value.as_bytes(), now), Ok(expected));
        }
    }
}

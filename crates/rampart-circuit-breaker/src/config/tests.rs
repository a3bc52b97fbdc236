use super::*;

fn field_of(b: CircuitBreakerConfigBuilder) -> &'static str {
    b.build()
        .expect_err("invalid config must be refused")
        .field()
}

#[test]
fn bad_configuration_names_the_field() {
    let b = CircuitBreakerConfig::builder;
    assert_eq!(
        field_of(b().failure_rate_threshold(150.0)),
        "failure_rate_threshold"
    );
    assert_eq!(
        field_of(b().failure_rate_threshold(0.0)),
        "failure_rate_threshold"
    );
    assert_eq!(
        field_of(b().failure_rate_threshold(f64::NAN)),
        "failure_rate_threshold"
    );
    assert_eq!(
        field_of(b().slow_calls(Duration::from_secs(1), -1.0)),
        "slow_call_rate_threshold"
    );
    assert_eq!(
        field_of(b().slow_calls(Duration::ZERO, 50.0)),
        "slow_call_threshold"
    );
    assert_eq!(field_of(b().count_window(0)), "sliding_window");
    assert_eq!(
        field_of(b().time_window(Duration::ZERO, 10)),
        "sliding_window"
    );
    assert_eq!(
        field_of(b().time_window(Duration::from_secs(10), 0)),
        "sliding_window"
    );
    assert_eq!(
        field_of(b().count_window(5).minimum_calls(10)),
        "minimum_calls"
    );
    assert_eq!(field_of(b().minimum_calls(0)), "minimum_calls");
    assert_eq!(
        field_of(b().half_open_max_probes(0)),
        "half_open_max_probes"
    );
    assert_eq!(
        field_of(b().consecutive_failures(0)),
        "consecutive_failures"
    );
    assert_eq!(
        field_of(b().close_policy(ClosePolicy::Successes(0))),
        "close_policy"
    );
    assert_eq!(
        field_of(b().close_policy(ClosePolicy::SuccessRate {
            probes: 5,
            min_success_rate: 101.0
        })),
        "close_policy"
    );
    assert_eq!(field_of(b().open_duration(Duration::ZERO)), "open_duration");
    let exp = |multiplier, max, jitter| OpenDuration::Exponential {
        base: Duration::from_secs(1),
        multiplier,
        max,
        jitter,
    };
    assert_eq!(
        field_of(b().open_duration_policy(exp(0.5, Duration::from_secs(9), 0.0))),
        "open_duration"
    );
    assert_eq!(
        field_of(b().open_duration_policy(exp(2.0, Duration::from_millis(1), 0.0))),
        "open_duration"
    );
    assert_eq!(
        field_of(b().open_duration_policy(exp(2.0, Duration::from_secs(9), 1.5))),
        "open_duration"
    );
    assert_eq!(
        field_of(b().half_open_max_wait(Duration::ZERO)),
        "half_open_max_wait"
    );
    assert_eq!(field_of(b().max_keys(0)), "max_keys");
    assert_eq!(field_of(b().idle_timeout(Duration::ZERO)), "idle_timeout");
    assert_eq!(field_of(b().no_failure_rate()), "failure_rate_threshold");
    let msg = b()
        .failure_rate_threshold(150.0)
        .build()
        .unwrap_err()
        .to_string();
    assert!(msg.contains("(0, 100]") && msg.contains("150"), "{msg}");
}

#[test]
fn exponential_open_duration_grows_and_caps() {
    let p = OpenDuration::Exponential {
        base: Duration::from_secs(1),
        multiplier: 2.0,
        max: Duration::from_secs(10),
        jitter: 0.0,
    };
    let ds: Vec<_> = (0..6).map(|n| p.nominal(n).as_secs()).collect();
    assert_eq!(ds, [1, 2, 4, 8, 10, 10]);
    assert_eq!(p.nominal(u32::MAX), Duration::from_secs(10));
}

#[test]
fn jitter_stays_within_its_band_and_the_cap() {
    let p = OpenDuration::Exponential {
        base: Duration::from_secs(4),
        multiplier: 2.0,
        max: Duration::from_secs(10),
        jitter: 0.25,
    };
    assert_eq!(p.with_jitter(0, 0.0), Duration::from_secs(3));
    assert_eq!(p.with_jitter(0, 0.5), Duration::from_secs(4));
    assert!(p.with_jitter(0, 0.999) < Duration::from_secs(5));
    assert_eq!(
        p.with_jitter(5, 0.999),
        Duration::from_secs(10),
        "never above max"
    );
}

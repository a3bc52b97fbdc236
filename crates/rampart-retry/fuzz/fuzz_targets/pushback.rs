//! `grpc-retry-pushback-ms` from arbitrary bytes: never a panic, never a wait above the maximum.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_retry::server_delay::{MAX_PUSHBACK, Pushback, parse_pushback};

fuzz_target!(|data: &[u8]| {
    if let Pushback::RetryAfter(wait) = parse_pushback(data) {
        assert!(wait <= MAX_PUSHBACK);
    }
});

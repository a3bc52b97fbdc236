//! `Retry-After` from arbitrary bytes: never a panic, never a wait above the documented maximum.

#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use rampart_retry::server_delay::{MAX_RETRY_AFTER, parse_retry_after};

fuzz_target!(|data: &[u8]| {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    if let Ok(wait) = parse_retry_after(data, now) {
        assert!(wait <= MAX_RETRY_AFTER);
    }
});

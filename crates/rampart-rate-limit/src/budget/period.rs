//! [`Period`]: when a budget starts over, on the wall clock.

use std::time::Duration;

/// When a [`Budget`](super::Budget) starts over: at each calendar boundary (an hour, a day, a
/// Monday, the first of a month) in a fixed offset from UTC, or every fixed length from the Unix
/// epoch.
///
/// ```
/// use std::time::Duration;
/// use rampart_rate_limit::budget::Period;
///
/// // Midnight in New York in winter (UTC−5).
/// let daily = Period::day().utc_offset(Duration::from_secs(5 * 3600), false);
/// # let _ = daily;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    kind: Kind,
    /// Seconds east of UTC.
    offset: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Every(u64),
    Week,
    Month,
    /// A window of this many seconds that slides in [`ROLLING_SLOTS`] steps.
    Rolling(u64),
}

/// The steps a rolling window slides in: a unit spent leaves it between `length × 59/60` and
/// `length` after it was spent.
pub(crate) const ROLLING_SLOTS: i64 = 60;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

impl Period {
    /// Every hour, on the hour.
    pub const fn hour() -> Self {
        Self::every_secs(HOUR)
    }

    /// Every day, at midnight.
    pub const fn day() -> Self {
        Self::every_secs(DAY)
    }

    /// Every week, at midnight between Sunday and Monday.
    pub const fn week() -> Self {
        Self {
            kind: Kind::Week,
            offset: 0,
        }
    }

    /// Every calendar month, at midnight on the first.
    pub const fn month() -> Self {
        Self {
            kind: Kind::Month,
            offset: 0,
        }
    }

    /// A rolling window of `length` (whole seconds, at least 60): what was spent in the last
    /// `length` counts, and leaves the window as it ages, in steps of `length / 60`. No
    /// boundary to wait for, and no burst of a whole budget right after one.
    pub const fn rolling(length: Duration) -> Self {
        Self {
            kind: Kind::Rolling(length.as_secs()),
            offset: 0,
        }
    }

    /// Every `length` from the Unix epoch (whole seconds, at least one).
    pub const fn every(length: Duration) -> Self {
        Self::every_secs(length.as_secs())
    }

    const fn every_secs(secs: u64) -> Self {
        Self {
            kind: Kind::Every(secs),
            offset: 0,
        }
    }

    /// The boundaries fall at local time `offset` from UTC: east (`west == false`, e.g.
    /// UTC+1 for Paris in winter) or west (`west == true`, UTC−5 for New York). A fixed
    /// offset: daylight saving time is not followed.
    pub const fn utc_offset(mut self, offset: Duration, west: bool) -> Self {
        let secs = offset.as_secs() as i64;
        self.offset = if west { -secs } else { secs };
        self
    }

    /// An error if the period is not a valid one (a zero length, an offset over 18 hours).
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if let Kind::Every(0) = self.kind {
            return Err("must be at least one second long");
        }
        if let Kind::Rolling(len) = self.kind
            && len < ROLLING_SLOTS as u64
        {
            return Err("a rolling window must be at least 60 s long");
        }
        if self.offset.unsigned_abs() > 18 * HOUR {
            return Err("its UTC offset must be within 18 hours");
        }
        Ok(())
    }

    /// The period holding `unix` (seconds since the Unix epoch): its number, when it started
    /// and when it ends (both in Unix seconds).
    pub(crate) fn at(&self, unix: i64) -> (i64, i64, i64) {
        let local = unix + self.offset;
        let (n, start, end) = match self.kind {
            Kind::Every(len) => {
                let len = len as i64;
                let n = local.div_euclid(len);
                (n, n * len, (n + 1) * len)
            }
            Kind::Week => {
                // 1970-01-01 was a Thursday: Mondays are 4 days after the epoch, modulo 7.
                let shifted = local - 4 * DAY as i64;
                let week = 7 * DAY as i64;
                let n = shifted.div_euclid(week);
                (
                    n,
                    n * week + 4 * DAY as i64,
                    (n + 1) * week + 4 * DAY as i64,
                )
            }
            // The slot holding `unix`; the offset does not apply to a rolling window.
            Kind::Rolling(_) => {
                let len = self.slot_secs();
                let n = unix.div_euclid(len);
                return (n, n * len, (n + 1) * len);
            }
            Kind::Month => {
                let days = local.div_euclid(DAY as i64);
                let (y, m, _) = civil_from_days(days);
                let n = y * 12 + i64::from(m) - 1;
                let start = days_from_civil(y, m, 1) * DAY as i64;
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                let end = days_from_civil(ny, nm, 1) * DAY as i64;
                (n, start, end)
            }
        };
        (n, start - self.offset, end - self.offset)
    }

    /// The period's nominal length, for the `RateLimit-Policy` window.
    pub(crate) fn nominal(&self) -> Duration {
        Duration::from_secs(match self.kind {
            Kind::Every(len) | Kind::Rolling(len) => len,
            Kind::Week => 7 * DAY,
            Kind::Month => 30 * DAY,
        })
    }

    /// `true` for a rolling window.
    pub(crate) const fn is_rolling(&self) -> bool {
        matches!(self.kind, Kind::Rolling(_))
    }

    /// A rolling window's slot length, in seconds.
    pub(crate) const fn slot_secs(&self) -> i64 {
        match self.kind {
            Kind::Rolling(len) => {
                let slot = len as i64 / ROLLING_SLOTS;
                if slot < 1 { 1 } else { slot }
            }
            _ => 0,
        }
    }
}

/// Year, month (1–12), day (1–31) of the day `z` days after 1970-01-01 (Howard Hinnant's
/// algorithm, proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days after 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-03T15:30:00Z.
    const NOW: i64 = 1_796_311_800;

    #[test]
    fn calendar_dates_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2026, 12, 3), NOW / 86_400);
        assert_eq!(civil_from_days(NOW / 86_400), (2026, 12, 3));
        for z in [-800_000, -1, 0, 59, 365 * 30 + 7, 800_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn a_day_starts_at_local_midnight() {
        let (_, start, end) = Period::day().at(NOW);
        assert_eq!(
            (start, end),
            (NOW - 15 * 3600 - 1800, NOW - 15 * 3600 - 1800 + 86_400)
        );
        // In New York (UTC−5) it is 10:30, so the day began at 05:00Z.
        let ny = Period::day().utc_offset(Duration::from_secs(5 * 3600), true);
        let (_, start, _) = ny.at(NOW);
        assert_eq!(start, NOW - 10 * 3600 - 1800);
    }

    #[test]
    fn a_week_starts_on_monday_and_a_month_on_the_first() {
        // 2026-12-03 is a Thursday: the week began on Monday 2026-11-30.
        let (_, start, end) = Period::week().at(NOW);
        assert_eq!(start, days_from_civil(2026, 11, 30) * 86_400);
        assert_eq!(end - start, 7 * 86_400);
        let (n, start, end) = Period::month().at(NOW);
        assert_eq!(start, days_from_civil(2026, 12, 1) * 86_400);
        assert_eq!(end, days_from_civil(2027, 1, 1) * 86_400);
        let (next, ..) = Period::month().at(end);
        assert_eq!(next, n + 1);
    }

    #[test]
    fn bad_periods_are_refused() {
        assert!(Period::every(Duration::ZERO).check().is_err());
        assert!(
            Period::day()
                .utc_offset(Duration::from_secs(19 * 3600), false)
                .check()
                .is_err()
        );
        assert!(Period::hour().check().is_ok());
    }
}

//! Small text formatters: ages (`3m12s`), RFC 3339 times, durations on the command line,
//! tables, and text made safe for a terminal.

use std::{
    fmt::Write as _,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// A duration as its two largest units, the second left out when zero: `0s`, `42s`,
/// `3m12s`, `5h07m`, `12d3h`, `7d`.
pub(crate) fn age(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, mins, secs) {
        (0, 0, 0, s) => format!("{s}s"),
        (0, 0, m, 0) => format!("{m}m"),
        (0, 0, m, s) => format!("{m}m{s:02}s"),
        (0, h, 0, _) => format!("{h}h"),
        (0, h, m, _) => format!("{h}h{m:02}m"),
        (d, 0, _, _) => format!("{d}d"),
        (d, h, _, _) => format!("{d}d{h}h"),
    }
}

/// How long before `now` the time `t` was, as an [`age`].
pub(crate) fn age_at(t: SystemTime, now: SystemTime) -> String {
    age(now.duration_since(t).unwrap_or_default())
}

/// `t` in RFC 3339, UTC, to the millisecond: `2025-03-01T12:34:56.789Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The calendar date `days` days after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// A duration written as numbers with units, `s`, `m`, `h`, `d` (`90s`, `30m`, `1h30m`, `7d`);
/// a bare number is seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration: expected e.g. 90s, 30m, 1h30m or 7d");
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// Text safe to print on a terminal: control characters (but newlines and tabs) escaped, so
/// that a recorded body or header cannot move the cursor or change colours.
pub(crate) fn printable(s: &str) -> String {
    escape_controls(s, |c| c != '\n' && c != '\t')
}

/// [`printable`], on one line: newlines and tabs escaped too.
pub(crate) fn one_line(s: &str) -> String {
    escape_controls(s, |_| true)
}

/// `true` for the invisible format characters that reorder or hide text on a terminal:
/// bidirectional embeddings, overrides and isolates (a record's URI with U+202E in it would
/// print reversed), zero-width characters, the byte-order mark.
fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fn escape_controls(s: &str, escape: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if (c.is_control() || is_format_char(c)) && escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(cols) {
            if i + 1 == cols {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ages_show_their_two_largest_units() {
        let s = Duration::from_secs;
        assert_eq!(age(Duration::from_millis(400)), "0s");
        assert_eq!(age(s(42)), "42s");
        assert_eq!(age(s(192)), "3m12s");
        assert_eq!(age(s(3600 * 5 + 7 * 60 + 9)), "5h07m");
        assert_eq!(age(s(86_400 * 12 + 3600 * 3 + 59)), "12d3h");
        assert_eq!(age(s(86_400 * 7 + 59)), "7d");
        assert_eq!(age(s(7200 + 30)), "2h");
        assert_eq!(age(s(180)), "3m");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2024-02-29 (a leap day) 13:45:30.250 UTC
        let t = UNIX_EPOCH + Duration::from_millis(1_709_214_330_250);
        assert_eq!(rfc3339(t), "2024-02-29T13:45:30.250Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799);
        assert_eq!(rfc3339(t), "2099-12-31T23:59:59.000Z");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        for bad in ["", "m", "5x", "5m3", "-1s", "99999999999999999999d"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("not a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn terminal_control_characters_are_escaped() {
        assert_eq!(printable("a\x1b[31mb\nc\td"), "a\\u{1b}[31mb\nc\td");
        assert_eq!(one_line("a\nb\x07"), "a\\nb\\u{7}");
        // Bidirectional overrides and zero-width characters would make a URI print other than
        // it is.
        assert_eq!(one_line("/pay\u{202E}lmth.exe"), "/pay\\u{202e}lmth.exe");
        assert_eq!(
            printable("a\u{200B}b\u{2066}c\u{FEFF}"),
            "a\\u{200b}b\\u{2066}c\\u{feff}"
        );
    }

    #[test]
    fn tables_align_their_columns() {
        let t = table(
            &["ID", "STATE", "URI"],
            &[
                vec!["1".into(), "pending".into(), "http://a".into()],
                vec!["22".into(), "given_up".into(), "http://bb".into()],
            ],
        );
        assert_eq!(
            t,
            "ID  STATE     URI\n1   pending   http://a\n22  given_up  http://bb\n"
        );
    }
}

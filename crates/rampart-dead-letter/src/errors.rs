//! [`top_errors`]: what the pending backlog failed with, grouped by a normalised message.

use std::collections::HashMap;

use rampart_core::redact;

use crate::{DeadLetterId, DeadLetterStore, Filter, ParkReason, Query, State, StoreError};

/// One group of records that failed the same way, by [`normalise_error`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorCount {
    /// The normalised message: the failure's error chain on one line, ids, addresses and long
    /// numbers replaced by placeholders.
    pub message: String,
    /// Records in the group.
    pub count: u64,
    /// Their failure kind (the first record's, if they differ).
    pub kind: ParkReason,
    /// The oldest record of the group, to look at with `rampart dlq show`.
    pub example: DeadLetterId,
}

/// The failure of `chain` (outermost error first, as a record keeps it) on one line, with what
/// varies between two records that failed the same way replaced, so that they group together:
/// UUIDs become `<id>`, IPv4 addresses (with their port) `<addr>`, runs of 16 or more hex
/// digits `<hex>`, and numbers of four digits or more `<n>`. Status codes and small counts are
/// kept: `response status 503` and `response status 502` are different failures. At most 200
/// characters.
///
/// ```
/// use rampart_dead_letter::normalise_error;
///
/// let a = normalise_error(&["client error (Connect)".into(), "tcp connect error: 10.0.0.7:8443: refused".into()]);
/// let b = normalise_error(&["client error (Connect)".into(), "tcp connect error: 10.0.0.9:8443: refused".into()]);
/// assert_eq!(a, b);
/// assert_eq!(a, "client error (Connect): tcp connect error: <addr>: refused");
/// assert_eq!(normalise_error(&["response status 503".into()]), "response status 503");
/// assert_eq!(normalise_error(&["order 1234567 not found".into()]), "order <n> not found");
/// ```
pub fn normalise_error(chain: &[String]) -> String {
    let line = chain.join(": ");
    let line = redact::text(&line);
    let mut out = String::with_capacity(line.len().min(200));
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() && out.chars().count() < 200 {
        let rest = &chars[i..];
        if let Some(n) = uuid_len(rest) {
            out.push_str("<id>");
            i += n;
        } else if let Some(n) = ipv4_len(rest) {
            out.push_str("<addr>");
            i += n;
        } else if rest[0].is_ascii_hexdigit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let run = rest.iter().take_while(|c| c.is_ascii_hexdigit()).count();
            let digits = rest[..run].iter().all(char::is_ascii_digit);
            let word_ends = rest.get(run).is_none_or(|c| !c.is_ascii_alphanumeric());
            if run >= 16 && word_ends {
                out.push_str("<hex>");
            } else if digits && run >= 4 && word_ends {
                out.push_str("<n>");
            } else {
                out.extend(&rest[..run]);
            }
            i += run;
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    out
}

/// The length of a UUID (8-4-4-4-12 hex digits) at the start of `s`.
fn uuid_len(s: &[char]) -> Option<usize> {
    let groups = [8, 4, 4, 4, 12];
    let mut i = 0;
    for (g, len) in groups.iter().enumerate() {
        if g > 0 {
            (s.get(i) == Some(&'-')).then_some(())?;
            i += 1;
        }
        let run = s[i.min(s.len())..]
            .iter()
            .take(*len)
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        (run == *len).then_some(())?;
        i += len;
    }
    Some(i)
}

/// The length of an IPv4 address, and its `:port` if any, at the start of `s`.
fn ipv4_len(s: &[char]) -> Option<usize> {
    let mut i = 0;
    for part in 0..4 {
        if part > 0 {
            (s.get(i) == Some(&'.')).then_some(())?;
            i += 1;
        }
        let run = s[i.min(s.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        (1..=3).contains(&run).then_some(())?;
        i += run;
    }
    if s.get(i) == Some(&':') {
        let port = s[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if port > 0 {
            i += 1 + port;
        }
    }
    Some(i)
}

/// The `n` most common failures among the records matching `filter` (the pending ones when
/// `filter` names no state), largest group first, then by the oldest record.
///
/// It reads every matching record, a page at a time: linear in the backlog, so meant for an
/// operator's question ("what is the backlog made of?", `rampart dlq stats --errors`), not for
/// a metric scraped every few seconds; the counts by kind in [`Stats`](crate::Stats) are the
/// cheap view.
pub async fn top_errors(
    store: &dyn DeadLetterStore,
    mut filter: Filter,
    n: usize,
) -> Result<Vec<ErrorCount>, StoreError> {
    if filter.state.is_none() {
        filter = filter.state(State::Pending);
    }
    let mut groups: HashMap<String, ErrorCount> = HashMap::new();
    let mut query = Query::new(filter, 500);
    loop {
        let page = store.list(&query).await?;
        let Some(last) = page.last() else { break };
        query.after = Some(last.id);
        for r in page {
            let message = normalise_error(&r.failure.chain);
            groups
                .entry(message.clone())
                .and_modify(|g| g.count += 1)
                .or_insert(ErrorCount {
                    message,
                    count: 1,
                    kind: r.failure.kind,
                    example: r.id,
                });
        }
    }
    let mut top: Vec<ErrorCount> = groups.into_values().collect();
    top.sort_by(|a, b| b.count.cmp(&a.count).then(a.example.cmp(&b.example)));
    top.truncate(n);
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Failure, MemoryStore, conformance::record};

    #[test]
    fn what_varies_between_two_failures_is_replaced_and_what_tells_them_apart_is_kept() {
        let n = |s: &str| normalise_error(&[s.to_owned()]);
        assert_eq!(
            n("no dead letter 0197300c-8a3e-7b91-9f0e-2a4c1d5e6f70 here"),
            "no dead letter <id> here"
        );
        assert_eq!(
            n("connect to 127.0.0.1:9 failed"),
            "connect to <addr> failed"
        );
        assert_eq!(
            n("etag deadbeefdeadbeefdeadbeef mismatch"),
            "etag <hex> mismatch"
        );
        assert_eq!(n("took 15000 ms"), "took <n> ms");
        assert_eq!(n("response status 503"), "response status 503");
        assert_eq!(n("http2 error"), "http2 error", "digits inside words stay");
        assert_eq!(n("café 2024"), "café <n>");
        assert_eq!(n(&"x".repeat(500)).chars().count(), 200);
    }

    #[tokio::test]
    async fn the_pending_backlog_is_grouped_largest_first() {
        let store = MemoryStore::bounded(100).unwrap();
        let fail = |chain: &str, i: u32| {
            let mut r = record(i);
            r.failure = Failure {
                kind: ParkReason::Transient,
                status: None,
                chain: vec![chain.to_owned()],
            };
            r
        };
        let mut oldest_refused = None;
        for i in 0..5 {
            let r = fail(&format!("connect to 10.0.0.{i}:443 refused"), i);
            oldest_refused.get_or_insert(r.id);
            store.append(&r).await.unwrap();
        }
        for i in 5..7 {
            store.append(&fail("response status 503", i)).await.unwrap();
        }
        let mut done = fail("response status 502", 7);
        done.state = State::Delivered;
        store.append(&done).await.unwrap();

        let top = top_errors(&store, Filter::all(), 10).await.unwrap();
        let counts: Vec<(&str, u64)> = top.iter().map(|g| (g.message.as_str(), g.count)).collect();
        assert_eq!(
            counts,
            [("connect to <addr> refused", 5), ("response status 503", 2)],
            "delivered records are not in the backlog"
        );
        assert_eq!(Some(top[0].example), oldest_refused);
        assert_eq!(top_errors(&store, Filter::all(), 1).await.unwrap().len(), 1);
    }
}

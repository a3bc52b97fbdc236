//! [`Problem`]: an RFC 9457 problem details document (`application/problem+json`), the body
//! of every error response rampart makes (a rejection, a bad idempotency key, …).

use std::fmt::Write as _;

/// The media type of a problem details document.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem details document.
///
/// ```
/// use rampart_core::problem::Problem;
///
/// let p = Problem::new("urn:rampart:circuit-open", "Circuit open", 503)
///     .detail("the \"inventory\" dependency is failing")
///     .extension("retry_after", 3);
/// assert_eq!(
///     p.to_json(),
///     r#"{"type":"urn:rampart:circuit-open","title":"Circuit open","status":503,"detail":"the \"inventory\" dependency is failing","retry_after":3}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    kind: String,
    title: String,
    status: u16,
    detail: Option<String>,
    extensions: Vec<(String, Value)>,
}

/// The value of an extension member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string.
    Str(String),
    /// A number.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<i32> for Value {
    fn from(n: i32) -> Self {
        Value::Int(n.into())
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Int(n.into())
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl Problem {
    /// A problem of type `kind` (a URI; rampart's are `urn:rampart:…`), with a short
    /// human-readable `title` and the HTTP `status`.
    pub fn new(kind: impl Into<String>, title: impl Into<String>, status: u16) -> Self {
        Self {
            kind: kind.into(),
            title: title.into(),
            status,
            detail: None,
            extensions: Vec::new(),
        }
    }

    /// With an explanation specific to this occurrence.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// With an extension member `name`.
    pub fn extension(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extensions.push((name.into(), value.into()));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The document, as JSON.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(128);
        out.push_str("{\"type\":");
        string(&mut out, &self.kind);
        out.push_str(",\"title\":");
        string(&mut out, &self.title);
        let _ = write!(out, ",\"status\":{}", self.status);
        if let Some(d) = &self.detail {
            out.push_str(",\"detail\":");
            string(&mut out, d);
        }
        for (name, value) in &self.extensions {
            out.push(',');
            string(&mut out, name);
            out.push(':');
            match value {
                Value::Str(s) => string(&mut out, s),
                Value::Int(n) => {
                    let _ = write!(out, "{n}");
                }
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            }
        }
        out.push('}');
        out
    }

    /// The problem as an HTTP response (with the `application/problem+json` content type), its
    /// body made from the JSON bytes.
    #[cfg(feature = "http")]
    pub fn to_response<B: From<bytes::Bytes>>(&self) -> http::Response<B> {
        let mut res = http::Response::new(B::from(bytes::Bytes::from(self.to_json())));
        *res.status_mut() = http::StatusCode::from_u16(self.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(CONTENT_TYPE),
        );
        res
    }
}

/// Appends `s` as a JSON string.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let p = Problem::new("about:blank", "a\u{1}b\\\n", 400);
        assert_eq!(
            p.to_json(),
            r#"{"type":"about:blank","title":"a\u0001b\\\n","status":400}"#
        );
    }
}

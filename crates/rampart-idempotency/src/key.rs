//! Reading the idempotency key from a request header: [`parse_key`], its [`KeyError`], and the
//! per-route [`KeyPolicy`].
//!
//! The IETF httpapi draft defines `Idempotency-Key` as a structured-field string
//! (`Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`); most clients (and Stripe's)
//! send a bare value instead (`Idempotency-Key: 8e03978e-…`). Both are accepted, and name the
//! same key: `"abc"` and `abc` are one key.
//!
//! A key is 1 to [`MAX_KEY_LEN`] characters of visible ASCII (`!` to `~`), after the quotes and
//! escapes of the quoted form are removed. Keys compare byte for byte (`abc` and `ABC` are two
//! keys).

use std::fmt;

/// The longest key accepted, in characters.
pub const MAX_KEY_LEN: usize = 255;

/// Whether a route wants an idempotency key.
///
/// Set per layer: give each axum route its own layer (see the crate docs, "Per route").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyPolicy {
    /// A request without a key is refused with `400` problem+json.
    Required,
    /// A request without a key runs as if the layer were not there; a request with one is
    /// deduplicated. The default.
    #[default]
    Optional,
    /// The layer does nothing: every request goes through untouched, even with a key.
    Off,
}

/// Why a key header was refused (the request gets `400` problem+json).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// The header is empty, or holds `""`.
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`] characters (the length found).
    TooLong(usize),
    /// The key holds a character that is not visible ASCII (a space, a control character, a
    /// byte above 0x7e).
    InvalidCharacter,
    /// A quoted key has no closing quote.
    Unterminated,
    /// A quoted key has a backslash that escapes neither `"` nor `\`.
    InvalidEscape,
    /// Something follows the closing quote of a quoted key (parameters are not accepted).
    TrailingCharacters,
    /// The header appears more than once.
    Repeated,
}

impl KeyError {
    /// A lowercase name, for metrics and logs: `empty`, `too_long`, `invalid_character`,
    /// `unterminated`, `invalid_escape`, `trailing_characters`, `repeated`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyError::Empty => "empty",
            KeyError::TooLong(_) => "too_long",
            KeyError::InvalidCharacter => "invalid_character",
            KeyError::Unterminated => "unterminated",
            KeyError::InvalidEscape => "invalid_escape",
            KeyError::TrailingCharacters => "trailing_characters",
            KeyError::Repeated => "repeated",
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => f.write_str("the key is empty"),
            KeyError::TooLong(n) => write!(
                f,
                "the key is {n} characters long; at most {MAX_KEY_LEN} are allowed"
            ),
            KeyError::InvalidCharacter => {
                f.write_str("the key may only hold visible ASCII characters (! to ~)")
            }
            KeyError::Unterminated => f.write_str("the quoted key has no closing quote"),
            KeyError::InvalidEscape => {
                f.write_str("a backslash in a quoted key may only escape \" or \\")
            }
            KeyError::TrailingCharacters => {
                f.write_str("nothing may follow the closing quote of a quoted key")
            }
            KeyError::Repeated => f.write_str("the key header appears more than once"),
        }
    }
}

impl std::error::Error for KeyError {}

/// `true` for visible ASCII, `!` (0x21) to `~` (0x7e).
const fn visible(b: u8) -> bool {
    matches!(b, 0x21..=0x7e)
}

/// Parses the value of an idempotency-key header: a structured-field string (`"abc"`, with
/// `\"` and `\\` escapes) or a bare value (`abc`). Leading and trailing spaces and tabs are
/// ignored.
///
/// ```
/// use rampart_idempotency::{parse_key, KeyError};
///
/// assert_eq!(parse_key(b"\"order-42\"").unwrap(), "order-42");
/// assert_eq!(parse_key(b"order-42").unwrap(), "order-42");
/// assert_eq!(parse_key(b"\"a\\\"b\"").unwrap(), "a\"b");
/// assert_eq!(parse_key(b"two words"), Err(KeyError::InvalidCharacter));
/// assert_eq!(parse_key(&[b'k'; 256]), Err(KeyError::TooLong(256)));
/// ```
pub fn parse_key(value: &[u8]) -> Result<String, KeyError> {
    let value = value.trim_ascii();
    let key = match value.split_first() {
        None => return Err(KeyError::Empty),
        Some((b'"', rest)) => unquote(rest)?,
        Some(_) => {
            if !value.iter().copied().all(visible) {
                return Err(KeyError::InvalidCharacter);
            }
            value.to_vec()
        }
    };
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong(key.len()));
    }
    // Every byte is visible ASCII, so this never fails.
    String::from_utf8(key).map_err(|_| KeyError::InvalidCharacter)
}

/// The content of a structured-field string, after its opening quote.
fn unquote(rest: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut key = Vec::with_capacity(rest.len());
    let mut bytes = rest.iter().copied();
    loop {
        match bytes.next() {
            None => return Err(KeyError::Unterminated),
            Some(b'"') => {
                return match bytes.next() {
                    None => Ok(key),
                    Some(_) => Err(KeyError::TrailingCharacters),
                };
            }
            Some(b'\\') => match bytes.next() {
                Some(c @ (b'"' | b'\\')) => key.push(c),
                None => return Err(KeyError::Unterminated),
                Some(_) => return Err(KeyError::InvalidEscape),
            },
            Some(b) if visible(b) => key.push(b),
            Some(_) => return Err(KeyError::InvalidCharacter),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_quoted_forms_name_the_same_key() {
        assert_eq!(parse_key(b"abc").unwrap(), "abc");
        assert_eq!(parse_key(b"\"abc\"").unwrap(), "abc");
        assert_eq!(
            parse_key(b"8e03978e-40d5-43e8-bc93-6894a57f9324").unwrap(),
            "8e03978e-40d5-43e8-bc93-6894a57f9324"
        );
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        assert_eq!(parse_key(b"  abc\t").unwrap(), "abc");
        assert_eq!(parse_key(b" \"abc\" ").unwrap(), "abc");
    }

    #[test]
    fn escapes_in_the_quoted_form() {
        assert_eq!(parse_key(br#""a\"b""#).unwrap(), "a\"b");
        assert_eq!(parse_key(br#""a\\b""#).unwrap(), "a\\b");
        assert_eq!(parse_key(br#""a\nb""#), Err(KeyError::InvalidEscape));
        assert_eq!(parse_key(br#""a\"#), Err(KeyError::Unterminated));
    }

    #[test]
    fn malformed_quoted_keys() {
        assert_eq!(parse_key(b"\"abc"), Err(KeyError::Unterminated));
        assert_eq!(parse_key(b"\"abc\";p=1"), Err(KeyError::TrailingCharacters));
        assert_eq!(parse_key(b"\"a b\""), Err(KeyError::InvalidCharacter));
        assert_eq!(parse_key(b"\"\""), Err(KeyError::Empty));
        assert_eq!(parse_key(b"\""), Err(KeyError::Unterminated));
    }

    #[test]
    fn only_visible_ascii() {
        assert_eq!(parse_key(b""), Err(KeyError::Empty));
        assert_eq!(parse_key(b"   "), Err(KeyError::Empty));
        assert_eq!(parse_key(b"a b"), Err(KeyError::InvalidCharacter));
        assert_eq!(parse_key(b"a\x01b"), Err(KeyError::InvalidCharacter));
        assert_eq!(parse_key(b"caf\xc3\xa9"), Err(KeyError::InvalidCharacter));
        assert_eq!(parse_key(b"a\x7fb"), Err(KeyError::InvalidCharacter));
        // Every visible character is allowed in a bare key, quotes and colons included.
        let all: Vec<u8> = (0x21..=0x7e).collect();
        assert_eq!(parse_key(&all).unwrap().len(), 94);
    }

    #[test]
    fn at_most_255_characters() {
        assert_eq!(parse_key(&[b'k'; 255]).unwrap().len(), 255);
        assert_eq!(parse_key(&[b'k'; 256]), Err(KeyError::TooLong(256)));
        // The limit counts the key, not its quotes and escapes.
        let mut quoted = vec![b'"'];
        quoted.extend_from_slice(&[b'k'; 254]);
        quoted.extend_from_slice(b"\\\\\"");
        assert_eq!(parse_key(&quoted).unwrap().len(), 255);
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(
            KeyError::TooLong(300).to_string(),
            "the key is 300 characters long; at most 255 are allowed"
        );
        assert_eq!(KeyError::Repeated.as_str(), "repeated");
    }
}

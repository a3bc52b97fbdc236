//! The dead-letter record, [`DeadLetter`], and its stored format.

use std::{
    collections::BTreeMap,
    fmt,
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// The version of the record format this crate writes.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// A record's id: a UUID v7, so ids are unique across processes and sort by creation time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeadLetterId(Uuid);

impl DeadLetterId {
    /// A new id for now.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id as a UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The id of a UUID (any version; stores sort by its bytes).
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl Default for DeadLetterId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for DeadLetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for DeadLetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeadLetterId({self})")
    }
}

/// The text was not a UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseIdError(String);

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a dead-letter id (a UUID): {:?}", self.0)
    }
}

impl std::error::Error for ParseIdError {}

impl FromStr for DeadLetterId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| ParseIdError(s.to_owned()))
    }
}

impl Serialize for DeadLetterId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeadLetterId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a record is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Parked, waiting for a redrive.
    Pending,
    /// A redrive has taken it and is sending it.
    Redriving,
    /// A redrive delivered it.
    Delivered,
    /// Redriven the maximum number of times without success (or given up by hand).
    GivenUp,
}

impl State {
    /// Every state, in order.
    pub const ALL: [State; 4] = [
        State::Pending,
        State::Redriving,
        State::Delivered,
        State::GivenUp,
    ];

    /// The name used in the format, in filters and in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Redriving => "redriving",
            State::Delivered => "delivered",
            State::GivenUp => "given_up",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text did not name a state or a failure kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    what: &'static str,
    got: String,
    allowed: &'static str,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?}: expected one of {}",
            self.what, self.got, self.allowed
        )
    }
}

impl std::error::Error for UnknownName {}

impl FromStr for State {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "state",
                got: s.to_owned(),
                allowed: "pending, redriving, delivered, given_up",
            })
    }
}

/// What kind of failure parked a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParkReason {
    /// A failure worth trying again later: a transport error, `5xx`, `408`, `429`.
    Transient,
    /// A failure that the same request will meet again (most `4xx`). Not parked by default.
    Fatal,
    /// A circuit breaker was open.
    CircuitOpen,
    /// A bulkhead had no room.
    BulkheadFull,
    /// An attempt or the whole call ran out of time.
    Timeout,
}

impl ParkReason {
    /// Every kind, in order.
    pub const ALL: [ParkReason; 5] = [
        ParkReason::Transient,
        ParkReason::Fatal,
        ParkReason::CircuitOpen,
        ParkReason::BulkheadFull,
        ParkReason::Timeout,
    ];

    /// The name used in the format, in filters and in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ParkReason::Transient => "transient",
            ParkReason::Fatal => "fatal",
            ParkReason::CircuitOpen => "circuit_open",
            ParkReason::BulkheadFull => "bulkhead_full",
            ParkReason::Timeout => "timeout",
        }
    }

    pub(crate) const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for ParkReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ParkReason {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ParkReason::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "failure kind",
                got: s.to_owned(),
                allowed: "transient, fatal, circuit_open, bulkhead_full, timeout",
            })
    }
}

/// Bytes as they are kept in the format: UTF-8 text as is, anything else as base64.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Payload(pub Bytes);

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) if s.len() <= 64 => write!(f, "{s:?}"),
            _ => write!(f, "<{} bytes>", self.0.len()),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum EncodedPayload {
    Utf8(String),
    Base64(String),
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let encoded = match std::str::from_utf8(&self.0) {
            Ok(text) => EncodedPayload::Utf8(text.to_owned()),
            Err(_) => {
                EncodedPayload::Base64(base64::engine::general_purpose::STANDARD.encode(&self.0))
            }
        };
        encoded.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match EncodedPayload::deserialize(d)? {
            EncodedPayload::Utf8(text) => Ok(Payload(Bytes::from(text))),
            EncodedPayload::Base64(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(|v| Payload(Bytes::from(v)))
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A request header as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The header name, lowercase.
    pub name: String,
    /// The value; `"[redacted]"` if [`redacted`](Self::redacted).
    pub value: Payload,
    /// The value was withheld (credentials, cookies, configured headers). A redrive leaves such
    /// a header out: the redrive stack must add credentials of its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

/// A request body as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RecordedBody {
    /// The body, or its first bytes if [`truncated`](Self::truncated).
    pub data: Payload,
    /// The whole body's length in bytes, if it was read to the end.
    #[serde(default)]
    pub len: Option<u64>,
    /// Only the first bytes were kept: the body was larger than the limit. A truncated record
    /// cannot be redriven.
    #[serde(default)]
    pub truncated: bool,
    /// A lowercase hex SHA-256 of the whole body, if it was read to the end.
    #[serde(default)]
    pub sha256: Option<String>,
}

impl RecordedBody {
    /// A whole body, with its length and hash.
    pub fn whole(data: Bytes) -> Self {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(&data);
        Self {
            len: Some(data.len() as u64),
            sha256: Some(hex(&hash)),
            data: Payload(data),
            truncated: false,
        }
    }

    /// The first bytes of a body that was larger than the limit.
    pub fn truncated(prefix: Bytes) -> Self {
        Self {
            data: Payload(prefix),
            len: None,
            truncated: true,
            sha256: None,
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The request that failed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Target {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The URI as it was sent (absolute for a client request).
    pub uri: String,
    /// The headers, in order, redacted where configured.
    #[serde(default)]
    pub headers: Vec<Header>,
    /// The body, up to the recording limit.
    #[serde(default)]
    pub body: RecordedBody,
    /// Query values were masked in [`uri`](Self::uri) (see the layer's
    /// [`keep_query`](crate::DeadLetterBuilder::keep_query)): the URI is not the one sent, and the
    /// request cannot be resent as it was.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub query_redacted: bool,
}

/// How the request failed, the last time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What kind of failure.
    pub kind: ParkReason,
    /// The last HTTP status, if a response came back.
    #[serde(default)]
    pub status: Option<u16>,
    /// The error and its sources, outermost first; for a failure response, its status line.
    #[serde(default)]
    pub chain: Vec<String>,
}

impl Failure {
    /// A failure of `kind` described by `err` and its sources, each text with the URLs in it
    /// redacted ([`rampart_core::redact::text`]: no user info, no query values).
    pub fn from_error(kind: ParkReason, err: &(dyn std::error::Error + 'static)) -> Self {
        let chain = rampart_core::error::chain_text(err)
            .iter()
            .map(|text| rampart_core::redact::text(text).into_owned())
            .collect();
        Self {
            kind,
            status: None,
            chain,
        }
    }

    /// A failure response with `status`.
    pub fn from_status(kind: ParkReason, status: http::StatusCode) -> Self {
        Self {
            kind,
            status: Some(status.as_u16()),
            chain: vec![format!("response status {status}")],
        }
    }
}

/// A request that finally failed, as parked in a [`DeadLetterStore`](crate::DeadLetterStore).
///
/// # Format, version 1
///
/// Every store keeps a record as one JSON object (SQLite in a `TEXT` column, Redis in a stream
/// entry's `record` field, NATS as a message payload), so any record can be read with standard
/// tools (`sqlite3`, `redis-cli`, `nats`, `jq`). The fields, modelled on Spring Kafka's
/// dead-letter headers and RabbitMQ's `x-death`:
///
/// | field | JSON | meaning |
/// |---|---|---|
/// | `v` | number | the format version, `1`; a reader refuses a record with a newer one |
/// | `id` | string | a UUID v7: unique, and sorts by the time it was made |
/// | `service` | string | the name of the service (the client stack) that parked it |
/// | `first_failed_at`, `last_failed_at` | number | Unix time in milliseconds of the first failed attempt and of the last failure |
/// | `updated_at` | number | Unix time in milliseconds of the last change of the record |
/// | `target.method`, `target.uri` | string | the request line; the URI without user info, its query values masked but the allow-listed keys' (see [Secrets](crate#secrets)) |
/// | `target.headers` | array of `{name, value}` | the request headers in order; a redacted value (a credential header) is the string `"[redacted]"` with `"redacted": true` |
/// | `target.query_redacted` | bool, absent if false | query values were masked in `target.uri` (keys kept): the URI is not the one sent |
/// | `target.body` | object | `data` (`{"utf8": "…"}` or `{"base64": "…"}`), `len` (the whole body's length, when known), `truncated`, `sha256` (hex, of the whole body, when known) |
/// | `idempotency_key` | string or null | the key every attempt carried, reused on redrive |
/// | `attempts` | number | attempts made before the request was parked |
/// | `failure.kind` | string | `transient`, `fatal`, `circuit_open`, `bulkhead_full`, `timeout` |
/// | `failure.status` | number or null | the last HTTP status, if a response came back |
/// | `failure.chain` | array of strings | the error and its sources, outermost first, URLs in them redacted |
/// | `redrive_count` | number | redrives tried so far |
/// | `state` | string | `pending`, `redriving`, `delivered`, `given_up` |
/// | `revision` | number | how many times the record was changed since it was parked (0 if absent); every [`update`](crate::DeadLetterStore::update) is a compare-and-set on it |
/// | `lease` | object or absent | while `redriving`: `owner` (the redrive holding it) and `until` (Unix ms); a lease that has run out makes the record claimable again |
///
/// Header values and bodies that are not UTF-8 are kept as base64, so nothing is lost.
/// Unknown fields are ignored on reading, so a version-1 reader reads records from a writer
/// that added optional fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The format version; [`DeadLetter::FORMAT_VERSION`] for records this crate makes.
    #[serde(rename = "v")]
    pub version: u32,
    /// The record's id.
    pub id: DeadLetterId,
    /// The service that parked it.
    pub service: String,
    /// The first failed attempt.
    #[serde(with = "millis")]
    pub first_failed_at: SystemTime,
    /// The last failure (of the call, or of its last redrive).
    #[serde(with = "millis")]
    pub last_failed_at: SystemTime,
    /// The last change of the record.
    #[serde(with = "millis")]
    pub updated_at: SystemTime,
    /// The request.
    pub target: Target,
    /// The idempotency key every attempt carried.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Attempts made before it was parked.
    pub attempts: u32,
    /// The last failure.
    pub failure: Failure,
    /// Redrives tried so far.
    #[serde(default)]
    pub redrive_count: u32,
    /// Where the record is in its life.
    pub state: State,
    /// Anything else a writer wants kept, e.g. a tenant or a trace id. Not read by rampart.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// How many times the record was changed since it was parked. A store's
    /// [`update`](crate::DeadLetterStore::update) replaces the record only if the stored one
    /// still has this revision, and stores it with one more: two writers that read the same
    /// revision cannot both win.
    #[serde(default)]
    pub revision: u64,
    /// Who is redriving the record, and until when; `None` unless `redriving`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

/// A redrive's hold on a record: while it lasts, no other redrive sends the record.
///
/// A lease is a time on the wall clock (records are shared between processes and machines),
/// so redrivers whose clocks disagree by more than a lease's margin may overlap; see
/// [`Redrive`](crate::Redrive) for how the lease bounds each send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The redrive holding it (a process id and a random part), for people reading the record.
    pub owner: String,
    /// When it runs out (kept to the millisecond).
    #[serde(with = "millis")]
    pub until: SystemTime,
}

impl DeadLetter {
    /// The version of the record format this crate writes, and the newest it reads.
    pub const FORMAT_VERSION: u32 = FORMAT_VERSION;

    /// A pending record with a new id, failed once, now (to the millisecond, as the format
    /// keeps times, so a record reads back from any store equal to itself).
    pub fn new(service: impl Into<String>, target: Target, failure: Failure) -> Self {
        let now = millis::truncate(SystemTime::now());
        Self {
            version: FORMAT_VERSION,
            id: DeadLetterId::new(),
            service: service.into(),
            first_failed_at: now,
            last_failed_at: now,
            updated_at: now,
            target,
            idempotency_key: None,
            attempts: 1,
            failure,
            redrive_count: 0,
            state: State::Pending,
            labels: BTreeMap::new(),
            revision: 0,
            lease: None,
        }
    }

    /// `true` if a redrive may take the record at `now`: it is `pending`, or `redriving` under
    /// a lease that has run out (or none: a record left by an older version, or by hand).
    pub fn is_claimable(&self, now: SystemTime) -> bool {
        match self.state {
            State::Pending => true,
            State::Redriving => self.lease.as_ref().is_none_or(|l| l.until <= now),
            State::Delivered | State::GivenUp => false,
        }
    }

    /// The record as JSON, in the [format](DeadLetter#format-version-1) stores keep.
    pub fn to_json(&self) -> String {
        // A record has only strings, numbers and maps with string keys: it always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A record from JSON; an error says what is wrong (not JSON, a missing field, a version
    /// newer than this crate reads).
    pub fn from_json(json: &[u8]) -> Result<Self, RecordError> {
        let record: DeadLetter =
            serde_json::from_slice(json).map_err(|e| RecordError(e.to_string()))?;
        if record.version > FORMAT_VERSION {
            return Err(RecordError(format!(
                "record format version {} is newer than this reader's {FORMAT_VERSION}",
                record.version
            )));
        }
        Ok(record)
    }

    /// How long ago the request first failed, at `now`.
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.first_failed_at).unwrap_or_default()
    }
}

/// A stored record could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError(String);

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unreadable dead-letter record: {}", self.0)
    }
}

impl std::error::Error for RecordError {}

/// Unix time in milliseconds: the format's time fields.
pub(crate) mod millis {
    use super::*;

    /// Unix time in milliseconds (0 before 1970), as the format keeps times.
    pub fn to_millis(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// `t` to the millisecond below.
    pub(crate) fn truncate(t: SystemTime) -> SystemTime {
        from_millis(to_millis(t))
    }

    /// The time `ms` milliseconds after the Unix epoch.
    pub fn from_millis(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(to_millis(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        u64::deserialize(d).map(from_millis)
    }
}

pub use millis::{from_millis as system_time_from_millis, to_millis as unix_millis};

#[cfg(test)]
mod tests;

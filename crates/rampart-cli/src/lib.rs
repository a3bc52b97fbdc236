//! The `rampart` command line tool (`rampart dlq list|show|stats|redrive|purge`), and the one
//! piece of it other programs reuse: [`open_store`], which turns a store URL into a
//! [`DeadLetterStore`].
//!
//! ```
//! use rampart_dead_letter::DeadLetterStore as _;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let url = format!("sqlite:{}", dir.path().join("dlq.db").display());
//! let store = rampart_cli::open_store(&url).await?; // created if it does not exist
//! assert_eq!(store.stats().await?.total, 0);
//! assert_eq!(store.describe(), url);
//!
//! let err = rampart_cli::open_store("postgres://db/dlq").await.unwrap_err();
//! assert!(err.to_string().contains("unknown store scheme \"postgres\""), "{err}");
//! # Ok(())
//! # }
//! ```
//!
//! # Store URLs
//!
//! | URL | store |
//! |---|---|
//! | `sqlite:PATH`, `sqlite://PATH` (so `sqlite:///abs/path.db`), or a bare `PATH` ending in `.db`, `.sqlite` or `.sqlite3` | [`SqliteStore`], the embedded store |
//! | `redis://[[user]:password@]host[:port][/db][?prefix=P]`, `redis+unix:///path[?db=N&prefix=P]` | `rampart_redis::RedisDeadLetterStore` (feature `redis`, on by default), key prefix `P` (default `rampart:dlq`) |
//! | `nats://[user:password@]host[:port][?bucket=B]` (several servers separated by commas), `tls://…` | `rampart_nats::NatsDeadLetterStore` (feature `nats`, on by default), key-value bucket `B` (default `rampart_dlq`) |
//!
//! A password in a URL is never shown in errors or in [`StoreUrl`]'s `Display`.
//!
//! Opening a Redis store leaves the server as it is until something is written; opening a
//! NATS store creates its bucket if it is missing (that is what `rampart_nats` does on
//! connect), so a mistyped bucket name shows up as an empty store.
//!
//! # The command
//!
//! `rampart --store URL dlq <command>`; the store may also come from the `RAMPART_STORE`
//! environment variable. `rampart dlq --help` lists the commands, `rampart dlq <command>
//! --help` their options. Exit codes: `0` success, `1` an error (the message is one line on
//! stderr), `2` a usage error, `3` a redrive that ran but left records failed or given up.

use std::{fmt, path::PathBuf, str::FromStr, sync::Arc};

use rampart_dead_letter::{DeadLetterStore, SqliteStore, StoreError, StoreErrorKind};

/// The forms a store URL may take, for error messages.
const EXPECTED: &str =
    "expected sqlite:PATH, redis://HOST[:PORT][/DB][?prefix=P] or nats://HOST[:PORT][?bucket=B]";

/// Opens the store at `url` (see [Store URLs](crate#store-urls)), creating an SQLite file that
/// does not exist yet.
///
/// Needs a tokio runtime (SQLite's blocking open runs on its blocking pool). A bad URL is a
/// [`StoreErrorKind::Config`] error; a server that does not answer is
/// [`StoreErrorKind::Unavailable`]. Either way the error names the store (without a password)
/// and the cause.
pub async fn open_store(url: &str) -> Result<Arc<dyn DeadLetterStore>, StoreError> {
    url.parse::<StoreUrl>()?.open().await
}

/// A parsed store URL: which store, and where. See [Store URLs](crate#store-urls).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// The embedded store in an SQLite file.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A Redis store.
    Redis {
        /// The connection URL, without the `prefix` parameter.
        url: String,
        /// The key prefix, if one was given.
        prefix: Option<String>,
    },
    /// A NATS JetStream store.
    Nats {
        /// The server URL (or several, separated by commas), without the `bucket` parameter.
        url: String,
        /// The key-value bucket, if one was given.
        bucket: Option<String>,
    },
}

impl StoreUrl {
    /// Opens the store, creating an SQLite file that does not exist yet.
    pub async fn open(&self) -> Result<Arc<dyn DeadLetterStore>, StoreError> {
        match self {
            StoreUrl::Sqlite { path } => {
                let path = path.clone();
                let name = self.to_string();
                let store = tokio::task::spawn_blocking(move || SqliteStore::open(path))
                    .await
                    .map_err(|e| {
                        StoreError::new(name, StoreErrorKind::Unavailable)
                            .with_source(format!("opening the file failed: {e}"))
                    })??;
                Ok(Arc::new(store))
            }
            StoreUrl::Redis { url, prefix } => open_redis(self, url, prefix.as_deref()).await,
            StoreUrl::Nats { url, bucket } => open_nats(self, url, bucket.as_deref()).await,
        }
    }

    /// Opens the store, but refuses an SQLite file that does not exist rather than create an
    /// empty store: what the `rampart` command does, so that a mistyped path is an error.
    pub async fn open_existing(&self) -> Result<Arc<dyn DeadLetterStore>, StoreError> {
        if let StoreUrl::Sqlite { path } = self
            && !path.exists()
        {
            return Err(
                StoreError::new(self.to_string(), StoreErrorKind::Config).with_source(format!(
                    "no such file {} (the application that parks dead letters creates it)",
                    path.display()
                )),
            );
        }
        self.open().await
    }
}

#[cfg(feature = "redis")]
async fn open_redis(
    _: &StoreUrl,
    url: &str,
    prefix: Option<&str>,
) -> Result<Arc<dyn DeadLetterStore>, StoreError> {
    let mut builder = rampart_redis::RedisDeadLetterStore::builder(url);
    if let Some(prefix) = prefix {
        builder = builder.prefix(prefix);
    }
    Ok(Arc::new(builder.connect().await?))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(
    this: &StoreUrl,
    _: &str,
    _: Option<&str>,
) -> Result<Arc<dyn DeadLetterStore>, StoreError> {
    Err(StoreError::new(this.to_string(), StoreErrorKind::Config)
        .with_source("this rampart was built without the `redis` feature"))
}

#[cfg(feature = "nats")]
async fn open_nats(
    _: &StoreUrl,
    url: &str,
    bucket: Option<&str>,
) -> Result<Arc<dyn DeadLetterStore>, StoreError> {
    let mut builder = rampart_nats::NatsDeadLetterStore::builder(url);
    if let Some(bucket) = bucket {
        builder = builder.bucket(bucket);
    }
    Ok(Arc::new(builder.connect().await?))
}

#[cfg(not(feature = "nats"))]
async fn open_nats(
    this: &StoreUrl,
    _: &str,
    _: Option<&str>,
) -> Result<Arc<dyn DeadLetterStore>, StoreError> {
    Err(StoreError::new(this.to_string(), StoreErrorKind::Config)
        .with_source("this rampart was built without the `nats` feature"))
}

impl FromStr for StoreUrl {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = |why: String| {
            StoreError::new(
                rampart_core::redact::connection_url(s),
                StoreErrorKind::Config,
            )
            .with_source(format!("{why}; {EXPECTED}"))
        };
        if s.is_empty() {
            return Err(bad("the store URL is empty".into()));
        }
        let Some((scheme, rest)) = s.split_once(':').filter(|(scheme, _)| is_scheme(scheme)) else {
            return if has_sqlite_extension(s) {
                Ok(StoreUrl::Sqlite { path: s.into() })
            } else {
                Err(bad(format!(
                    "{s:?} is neither a URL nor a path ending in .db, .sqlite or .sqlite3"
                )))
            };
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(bad("the sqlite URL has no file path".into()));
                }
                Ok(StoreUrl::Sqlite { path: path.into() })
            }
            "redis" | "rediss" | "redis+unix" | "unix" => {
                let (url, prefix) = take_param(s, "prefix");
                if prefix.as_deref() == Some("") {
                    return Err(bad("the prefix parameter is empty".into()));
                }
                Ok(StoreUrl::Redis { url, prefix })
            }
            "nats" | "tls" => {
                let (url, bucket) = take_param(s, "bucket");
                if bucket.as_deref() == Some("") {
                    return Err(bad("the bucket parameter is empty".into()));
                }
                Ok(StoreUrl::Nats { url, bucket })
            }
            // A one-letter "scheme" is a Windows drive: `C:\dlq.db`.
            other if other.len() == 1 && has_sqlite_extension(s) => {
                Ok(StoreUrl::Sqlite { path: s.into() })
            }
            other => Err(bad(format!("unknown store scheme {other:?}"))),
        }
    }
}

impl fmt::Display for StoreUrl {
    /// The URL, without a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite { path } => write!(f, "sqlite:{}", path.display()),
            StoreUrl::Redis { url, prefix } => {
                f.write_str(&rampart_core::redact::connection_url(url))?;
                match prefix {
                    Some(p) => write!(f, " (prefix {p})"),
                    None => Ok(()),
                }
            }
            StoreUrl::Nats { url, bucket } => {
                f.write_str(&rampart_core::redact::connection_url(url))?;
                match bucket {
                    Some(b) => write!(f, " (bucket {b})"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

fn is_scheme(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn has_sqlite_extension(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    [".db", ".sqlite", ".sqlite3"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// `url` with the value of the query parameter `name` taken out (and percent-decoded).
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut value = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => {
                value = Some(percent_decode(v));
                false
            }
            _ => !pair.is_empty(),
        })
        .collect();
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, value)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sqlite(path: &str) -> StoreUrl {
        StoreUrl::Sqlite { path: path.into() }
    }

    #[test]
    fn sqlite_urls_and_bare_paths() {
        assert_eq!(
            "sqlite:dlq.db".parse::<StoreUrl>().unwrap(),
            sqlite("dlq.db")
        );
        assert_eq!(
            "sqlite:///var/lib/app/dlq".parse::<StoreUrl>().unwrap(),
            sqlite("/var/lib/app/dlq")
        );
        assert_eq!(
            "sqlite:/tmp/x".parse::<StoreUrl>().unwrap(),
            sqlite("/tmp/x")
        );
        assert_eq!(
            "/tmp/dlq.db".parse::<StoreUrl>().unwrap(),
            sqlite("/tmp/dlq.db")
        );
        assert_eq!(
            "./a.sqlite3".parse::<StoreUrl>().unwrap(),
            sqlite("./a.sqlite3")
        );
        assert_eq!(
            r"C:\dlq.db".parse::<StoreUrl>().unwrap(),
            sqlite(r"C:\dlq.db")
        );
        assert_eq!(sqlite("/tmp/x").to_string(), "sqlite:/tmp/x");
    }

    #[test]
    fn redis_urls_keep_their_parameters_but_the_prefix() {
        assert_eq!(
            "redis://h:6379/2?prefix=billing%3Adlq&protocol=resp3"
                .parse::<StoreUrl>()
                .unwrap(),
            StoreUrl::Redis {
                url: "redis://h:6379/2?protocol=resp3".into(),
                prefix: Some("billing:dlq".into()),
            }
        );
        assert_eq!(
            "redis://h".parse::<StoreUrl>().unwrap(),
            StoreUrl::Redis {
                url: "redis://h".into(),
                prefix: None
            }
        );
        assert!("redis://h?prefix=".parse::<StoreUrl>().is_err());
    }

    #[test]
    fn nats_urls_take_a_bucket() {
        assert_eq!(
            "nats://a:4222,nats://b:4222?bucket=billing_dlq"
                .parse::<StoreUrl>()
                .unwrap(),
            StoreUrl::Nats {
                url: "nats://a:4222,nats://b:4222".into(),
                bucket: Some("billing_dlq".into()),
            }
        );
        let url: StoreUrl = "nats://u:pw@a:4222,nats://v:pw2@b".parse().unwrap();
        assert_eq!(url.to_string(), "nats://a:4222,nats://b");
        assert!("nats://h?bucket=".parse::<StoreUrl>().is_err());
    }

    #[test]
    fn bad_urls_name_the_problem_and_the_forms_allowed() {
        for (url, why) in [
            ("", "empty"),
            ("sqlite:", "no file path"),
            ("sqlite://", "no file path"),
            ("postgres://db/x", "unknown store scheme \"postgres\""),
            ("dlq", "neither a URL nor a path"),
        ] {
            let err = url.parse::<StoreUrl>().unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Config);
            let msg = err.to_string();
            assert!(msg.contains(why), "{url}: {msg}");
            assert!(msg.contains("expected sqlite:PATH"), "{url}: {msg}");
        }
    }

    #[test]
    fn passwords_are_never_shown() {
        let err = "mongodb://admin:s3cret@db:27017/x"
            .parse::<StoreUrl>()
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("mongodb://db:27017/x"), "{err}");
        let url: StoreUrl = "redis://:pw@h:6379/0?prefix=p".parse().unwrap();
        assert_eq!(url.to_string(), "redis://h:6379/0 (prefix p)");
        assert_eq!(format!("{url:?}"), "StoreUrl(redis://h:6379/0 (prefix p))");
        // Passwords with URL delimiters in them, and scheme-less forms.
        for url in [
            "redis://:p/ss@h:6379/0",
            "redis://:p?s,s#x@h:6379/0",
            "u:p/ss@h:1",
        ] {
            let shown = match url.parse::<StoreUrl>() {
                Ok(u) => u.to_string(),
                Err(e) => e.to_string(),
            };
            for secret in ["p/ss", "p?s,s#x", "u:p"] {
                assert!(!shown.contains(secret), "{url}: {shown}");
            }
        }
    }

    #[tokio::test]
    async fn open_existing_refuses_a_missing_file_and_open_creates_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq.db");
        let url = StoreUrl::Sqlite { path: path.clone() };
        let err = url.open_existing().await.unwrap_err().to_string();
        assert!(err.contains("no such file"), "{err}");
        assert!(!path.exists());
        let store = url.open().await.unwrap();
        assert_eq!(store.describe(), url.to_string());
        drop(store);
        assert!(url.open_existing().await.is_ok());
    }
}

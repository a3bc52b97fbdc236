//! The Lua scripts of [`RedisIdempotencyStore`](crate::RedisIdempotencyStore): one per
//! operation, so that each is atomic and costs one round trip (`EVALSHA`).
//!
//! An entry is one hash at `<prefix>:<StoreKey::as_str()>`, with the fields `fp` (the
//! fingerprint, 64 hex digits), `token` (the lease token, 32 hex digits) while in flight and
//! `resp` (`StoredResponse::encode`) once completed; its lifetime is the key's `PEXPIRE`: the
//! lease TTL while in flight, the retention once completed. Each script touches that one key
//! only.
//!
//! Each script's first write is the only one that can fail for lack of memory (Redis refuses a
//! script's first write over `maxmemory`, not the ones after it): a refused script changes
//! nothing.

use redis::Script;

/// KEYS: the entry. ARGV: fingerprint, lease token, lease TTL (ms).
/// Returns `{'acquired'}`, `{'mismatch'}`, `{'completed', <response>}`,
/// `{'in_flight', <PTTL ms>}` or `{'corrupt', <why>}`.
const BEGIN: &str = r#"
local e = redis.call('HMGET', KEYS[1], 'fp', 'resp')
if not e[1] then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return {'corrupt', 'an entry without a fingerprint'}
  end
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'token', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'acquired'}
end
if e[1] ~= ARGV[1] then return {'mismatch'} end
if e[2] then return {'completed', e[2]} end
return {'in_flight', redis.call('PTTL', KEYS[1])}
"#;

/// KEYS: the entry. ARGV: lease token, encoded response, retention (ms).
/// Returns 1 if stored; 0 (and changes nothing) if the entry is not in flight under the token.
const COMPLETE: &str = r#"
local e = redis.call('HMGET', KEYS[1], 'token', 'resp')
if e[1] ~= ARGV[1] or e[2] then return 0 end
redis.call('HSET', KEYS[1], 'resp', ARGV[2])
redis.call('HDEL', KEYS[1], 'token')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

/// KEYS: the entry. ARGV: lease token.
/// Returns 1 if removed; 0 (and changes nothing) if the entry is not in flight under the token.
const RELEASE: &str = r#"
local e = redis.call('HMGET', KEYS[1], 'token', 'resp')
if e[1] ~= ARGV[1] or e[2] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"#;

/// The scripts, each hashed once.
#[derive(Debug, Clone)]
pub(crate) struct Scripts {
    pub(crate) begin: Script,
    pub(crate) complete: Script,
    pub(crate) release: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            begin: Script::new(BEGIN),
            complete: Script::new(COMPLETE),
            release: Script::new(RELEASE),
        }
    }

    pub(crate) fn all(&self) -> [&Script; 3] {
        [&self.begin, &self.complete, &self.release]
    }
}

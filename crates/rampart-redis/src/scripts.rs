//! The Lua scripts every change goes through, so that a change is one atomic step on the server:
//! the record hash, the id index, the counters and the stream never disagree.
//!
//! Keys, for a prefix `P`: `P:records` (hash: id → record JSON), `P:ids` (sorted set, score 0:
//! ids in lexicographic order, which is id order), `P:counts` (hash: `total`, `state:<state>`,
//! `kind:<kind>`), `P:pending` (sorted set: ids of pending and redriving records, scored by
//! their first failure in Unix milliseconds) and `P:stream` (the feed of appended records).
//!
//! A script checks everything it can before its first write: Redis does not roll a script back,
//! so a script that failed half-way would leave half a change.

use redis::Script;

/// Shared by the scripts that change records: reading a stored record's state, kind and first
/// failure (to take it out of the counts), and keeping the counters. A record coming in brings
/// those three as arguments (`first` as whole Unix milliseconds): the caller has them at hand,
/// and decoding its JSON in Lua would cost more than the writes.
const COMMON: &str = r#"
local function meta(json)
  local ok, r = pcall(cjson.decode, json)
  if not ok or type(r) ~= 'table' or type(r['failure']) ~= 'table' then return nil end
  local state, kind, first = r['state'], r['failure']['kind'], r['first_failed_at']
  if type(state) ~= 'string' or type(kind) ~= 'string' or type(first) ~= 'number' then
    return nil
  end
  local rev = r['revision']
  if type(rev) ~= 'number' then rev = 0 end
  return { state = state, kind = kind, first = first, revision = rev }
end

local function account(counts, pending, id, m, delta)
  redis.call('HINCRBY', counts, 'total', delta)
  if not m then return end
  redis.call('HINCRBY', counts, 'state:' .. m.state, delta)
  redis.call('HINCRBY', counts, 'kind:' .. m.kind, delta)
  if m.state == 'pending' or m.state == 'redriving' then
    if delta > 0 then
      redis.call('ZADD', pending, m.first, id)
    else
      redis.call('ZREM', pending, id)
    end
  end
end
"#;

/// KEYS: records, ids, counts, pending, stream.
/// ARGV: stream max length (0: untrimmed), capacity (0: unbounded), then for each record its
/// id, JSON, state, failure kind and first failure (Unix ms): the caller has them at hand, so
/// the script need not decode the JSON.
/// Returns `ok`, `conflict <id>` or `full <held>`; writes nothing unless `ok`.
const APPEND: &str = r#"
local n = (#ARGV - 2) / 5
local seen = {}
for i = 0, n - 1 do
  local id = ARGV[3 + 5 * i]
  if seen[id] or redis.call('HEXISTS', KEYS[1], id) == 1 then
    return 'conflict ' .. id
  end
  seen[id] = true
end
local cap = tonumber(ARGV[2])
if cap > 0 then
  local held = redis.call('HLEN', KEYS[1])
  if held + n > cap then return 'full ' .. held end
end
local maxlen = ARGV[1]
for i = 0, n - 1 do
  local b = 3 + 5 * i
  local id, json = ARGV[b], ARGV[b + 1]
  redis.call('HSET', KEYS[1], id, json)
  redis.call('ZADD', KEYS[2], 0, id)
  account(KEYS[3], KEYS[4], id, { state = ARGV[b + 2], kind = ARGV[b + 3], first = ARGV[b + 4] }, 1)
  if maxlen ~= '0' then
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', maxlen, '*', 'id', id, 'record', json)
  else
    redis.call('XADD', KEYS[5], '*', 'id', id, 'record', json)
  end
end
return 'ok'
"#;

/// KEYS: records, counts, pending. ARGV: id, JSON (at the next revision), state, failure kind,
/// first failure (Unix ms), the revision the caller read.
/// Returns `ok`, `missing`, `stale <stored revision>` or `corrupt`; writes nothing unless `ok`:
/// a compare-and-set on the stored record's revision.
const UPDATE: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 'missing' end
local m = meta(old)
if not m then return 'corrupt' end
if m.revision ~= tonumber(ARGV[6]) then return 'stale ' .. m.revision end
account(KEYS[2], KEYS[3], ARGV[1], meta(old), -1)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
account(KEYS[2], KEYS[3], ARGV[1], { state = ARGV[3], kind = ARGV[4], first = ARGV[5] }, 1)
return 'ok'
"#;

/// KEYS: records, ids, counts, pending. ARGV: id, expected JSON pairs; an empty expected JSON
/// removes whatever is stored, any other removes the record only if it is still exactly that.
/// Returns how many records were removed.
const REMOVE: &str = r#"
local removed = 0
for i = 1, #ARGV, 2 do
  local id, expected = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', KEYS[1], id)
  if old and (expected == '' or old == expected) then
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    account(KEYS[3], KEYS[4], id, meta(old), -1)
    removed = removed + 1
  end
end
return removed
"#;

/// KEYS: ids, records. ARGV: the start of the range (`-` or `(<id>`), the page size.
/// Returns id, JSON pairs in id order, read at one instant (an id whose record is gone has an
/// empty JSON, which does not happen while every change goes through these scripts).
const PAGE: &str = r#"
local ids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
if #ids == 0 then return out end
local values = redis.call('HMGET', KEYS[2], unpack(ids))
for i, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = values[i] or ''
end
return out
"#;

/// The scripts, each hashed once.
#[derive(Debug, Clone)]
pub(crate) struct Scripts {
    pub(crate) append: Script,
    pub(crate) update: Script,
    pub(crate) remove: Script,
    pub(crate) page: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            append: Script::new(&format!("{COMMON}{APPEND}")),
            update: Script::new(&format!("{COMMON}{UPDATE}")),
            remove: Script::new(&format!("{COMMON}{REMOVE}")),
            page: Script::new(PAGE),
        }
    }
}

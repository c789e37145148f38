package redis

import goredis "github.com/redis/go-redis/v9"

// The scripts run atomically on the server. Keys they reach beyond KEYS (a
// delivery's message record, the record an index entry points to) are built
// from values stored under the same prefix, so the store needs a single
// Redis server (or primary), not a cluster.

// acceptScript: KEYS = message, recipient index, then per delivery its queue
// and its record. ARGV = message record JSON, updated_at, number of
// deliveries, from, id, then per delivery: id, score (visible-at ms), created
// (RFC 3339), envelope.
//
// Returns {1} when accepted, {0, rec, status, attempts, updated} with the
// existing record when (from, id) was accepted before, {2} when a delivery id
// is already queued.
var acceptScript = goredis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if st and st ~= 'denied' then
  return {0, redis.call('HMGET', KEYS[1], 'rec', 'status', 'attempts', 'updated')}
end
local n = tonumber(ARGV[3])
for i = 1, n do
  if redis.call('EXISTS', KEYS[2 + 2 * i]) == 1 then return {2} end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'status', 'accepted', 'attempts', 0,
  'updated', ARGV[2], 'open', n)
local cur = redis.call('GET', KEYS[2])
if not cur then
  redis.call('SET', KEYS[2], KEYS[1])
elseif cur ~= KEYS[1] then
  local cst = redis.call('HGET', cur, 'status')
  if (not cst) or cst == 'denied' then redis.call('SET', KEYS[2], KEYS[1]) end
end
for i = 1, n do
  local a = 5 + (i - 1) * 4
  redis.call('HSET', KEYS[2 + 2 * i], 'env', ARGV[a + 4], 'created', ARGV[a + 3],
    'from', ARGV[4], 'mid', ARGV[5], 'msg', KEYS[1], 'attempts', 0)
  redis.call('ZADD', KEYS[1 + 2 * i], ARGV[a + 2], ARGV[a + 1])
end
return {1}
`)

// denyScript: KEYS = message, recipient index. ARGV = record JSON, updated_at.
// Returns 1 when written, 0 when (from, id) was accepted before.
var denyScript = goredis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if st and st ~= 'denied' then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'status', 'denied', 'attempts', 0,
  'updated', ARGV[2], 'open', 0)
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[2], KEYS[1]) end
return 1
`)

// messageToScript: KEYS = recipient index. Returns the fields of the record
// it points to, or nil.
var messageToScript = goredis.NewScript(`
local mk = redis.call('GET', KEYS[1])
if not mk then return false end
return redis.call('HMGET', mk, 'rec', 'status', 'attempts', 'updated')
`)

// leaseScript: KEYS = queue. ARGV = now (ms), max, hidden-until score (ms),
// prefix of the recipient's delivery records. Returns per leased delivery
// {id, attempts, envelope, created, from, message id}.
var leaseScript = goredis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local dk = ARGV[4] .. id
  local f = redis.call('HMGET', dk, 'env', 'created', 'from', 'mid', 'msg')
  if not f[1] then
    redis.call('ZREM', KEYS[1], id)
  else
    local a = redis.call('HINCRBY', dk, 'attempts', 1)
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    if redis.call('EXISTS', f[5]) == 1 then
      local cur = tonumber(redis.call('HGET', f[5], 'attempts') or '0') or 0
      if a > cur then redis.call('HSET', f[5], 'attempts', a) end
    end
    out[#out + 1] = {id, a, f[1], f[2], f[3], f[4]}
  end
end
return out
`)

// ackScript: KEYS = queue, delivery record. ARGV = delivery id, updated_at.
// Returns 1 when acknowledged, 0 when the recipient has no such delivery.
var ackScript = goredis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local mk = redis.call('HGET', KEYS[2], 'msg')
redis.call('DEL', KEYS[2])
if mk and redis.call('EXISTS', mk) == 1 then
  local open = redis.call('HINCRBY', mk, 'open', -1)
  if open <= 0 and redis.call('HGET', mk, 'status') == 'accepted' then
    redis.call('HSET', mk, 'status', 'delivered', 'updated', ARGV[2])
  end
end
return 1
`)

package redis

import goredis "github.com/redis/go-redis/v9"

// The scripts run atomically on the server. Keys they reach beyond KEYS (a
// delivery's message record, the record an index entry points to) are built
// from values stored under the same prefix, so the store needs a single
// Redis server (or primary), not a cluster.

// acceptScript: KEYS = message, recipient index, set of recipients with a
// queue, consent set, retention set, then per delivery its queue and its
// record. ARGV = message record JSON, updated_at, number of deliveries, from,
// id, '1' to index the consent, purge-at score (ms; empty for none), retention
// member (from\x00id), the deliveries' (recipient, id) as JSON, then per
// delivery: id, score (visible-at ms), created (RFC 3339), envelope,
// recipient.
//
// Returns {1} when accepted, {0, rec, status, attempts, updated, purged} with
// the existing record when (from, id) was accepted before, {2} when a
// delivery id is already queued or dead-lettered.
var acceptScript = goredis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if st and st ~= 'denied' then
  return {0, redis.call('HMGET', KEYS[1], 'rec', 'status', 'attempts', 'updated', 'purged')}
end
local n = tonumber(ARGV[3])
for i = 1, n do
  if redis.call('EXISTS', KEYS[5 + 2 * i]) == 1 then return {2} end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'status', 'accepted', 'attempts', 0,
  'updated', ARGV[2], 'open', n, 'dlvs', ARGV[9])
local cur = redis.call('GET', KEYS[2])
if not cur then
  redis.call('SET', KEYS[2], KEYS[1])
elseif cur ~= KEYS[1] then
  local cst = redis.call('HGET', cur, 'status')
  if (not cst) or cst == 'denied' then redis.call('SET', KEYS[2], KEYS[1]) end
end
for i = 1, n do
  local a = 9 + (i - 1) * 5
  redis.call('HSET', KEYS[5 + 2 * i], 'env', ARGV[a + 4], 'created', ARGV[a + 3],
    'from', ARGV[4], 'mid', ARGV[5], 'msg', KEYS[1], 'attempts', 0)
  redis.call('ZADD', KEYS[4 + 2 * i], ARGV[a + 2], ARGV[a + 1])
  redis.call('SADD', KEYS[3], ARGV[a + 5])
  if ARGV[6] == '1' then redis.call('SADD', KEYS[4], ARGV[a + 5]) end
end
if ARGV[7] ~= '' then redis.call('ZADD', KEYS[5], ARGV[7], ARGV[8]) end
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
return redis.call('HMGET', mk, 'rec', 'status', 'attempts', 'updated', 'purged')
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

// releaseScript: KEYS = queue. ARGV = delivery id, visible-at score (ms).
// Returns 1 when moved, 0 when the recipient has no such delivery queued.
var releaseScript = goredis.NewScript(`
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
`)

// deadLetterScript: KEYS = queue, delivery record, dead-letter set. ARGV =
// delivery id, dead-letter member (recipient\x00id), now (ms), now (RFC
// 3339). The record stays where it is (envelope and attempts kept) with a
// 'dead' field; the member goes into the dead-letter set scored by now.
// Returns 1 when dead-lettered, 0 when the recipient has no such delivery
// queued.
var deadLetterScript = goredis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local mk = redis.call('HGET', KEYS[2], 'msg')
if not mk then return 0 end
redis.call('HSET', KEYS[2], 'dead', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
if redis.call('EXISTS', mk) == 1 then
  redis.call('HINCRBY', mk, 'dead', 1)
  redis.call('HSET', mk, 'status', 'dead_lettered', 'updated', ARGV[4])
end
return 1
`)

// deadLettersScript: KEYS = dead-letter set. ARGV = prefix of delivery
// records ("<prefix>d:"). Returns per dead letter, oldest first, {member,
// env, created, from, mid, attempts, dead}.
var deadLettersScript = goredis.NewScript(`
local out = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local f = redis.call('HMGET', ARGV[1] .. member, 'env', 'created', 'from', 'mid', 'attempts', 'dead')
  if f[1] then
    out[#out + 1] = {member, f[1], f[2], f[3], f[4], f[5], f[6]}
  end
end
return out
`)

// requeueScript: KEYS = dead-letter set, queue, delivery record, set of
// recipients with a queue. ARGV = dead-letter member, delivery id, score
// (now, ms), now (RFC 3339), recipient. Returns 1 when requeued, 0 when
// there is no such dead letter.
var requeueScript = goredis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local mk = redis.call('HGET', KEYS[3], 'msg')
if not mk then return 0 end
redis.call('HDEL', KEYS[3], 'dead')
redis.call('HSET', KEYS[3], 'attempts', 0)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[5])
if redis.call('EXISTS', mk) == 1 then
  local dead = redis.call('HINCRBY', mk, 'dead', -1)
  if dead <= 0 then
    redis.call('HSET', mk, 'dead', 0)
    if redis.call('HGET', mk, 'status') == 'dead_lettered' then
      redis.call('HSET', mk, 'status', 'accepted', 'updated', ARGV[4])
    end
  end
end
return 1
`)

// depthsScript: KEYS = set of recipients with a queue. ARGV = prefix of
// queues ("<prefix>q:"). Returns {recipient, depth, ...}.
var depthsScript = goredis.NewScript(`
local out = {}
for _, r in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = r
  out[#out + 1] = redis.call('ZCARD', ARGV[1] .. r)
end
return out
`)

// purgeScript: KEYS = retention set, dead-letter set. ARGV = now (ms), at
// most how many messages, key prefix, now (RFC 3339). For each message due
// (oldest purge time first) it deletes the message's queued and
// dead-lettered delivery records (only those that still belong to it) and
// marks it purged. Returns {member, deliveries deleted, ...} and, last, 1 if
// more messages may be due.
var purgeScript = goredis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local mk = ARGV[3] .. 'm:' .. member
  local f = redis.call('HMGET', mk, 'status', 'purged', 'dlvs')
  if f[1] and f[1] ~= 'denied' and not f[2] then
    local n = 0
    if f[3] then
      for _, ref in ipairs(cjson.decode(f[3])) do
        local sub = ref[1] .. '\0' .. ref[2]
        local dk = ARGV[3] .. 'd:' .. sub
        if redis.call('HGET', dk, 'msg') == mk then
          n = n + redis.call('ZREM', ARGV[3] .. 'q:' .. ref[1], ref[2])
          n = n + redis.call('ZREM', KEYS[2], sub)
          redis.call('DEL', dk)
        end
      end
    end
    redis.call('HSET', mk, 'purged', ARGV[4], 'open', 0, 'dead', 0)
    redis.call('HDEL', mk, 'dlvs')
    out[#out + 1] = member
    out[#out + 1] = n
  end
end
out[#out + 1] = (#due == tonumber(ARGV[2])) and 1 or 0
return out
`)

// incrScript: KEYS = counter. ARGV = time to live (ms). Counts one and
// makes sure the counter expires.
var incrScript = goredis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
`)

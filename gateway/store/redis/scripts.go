package redis

import goredis "github.com/redis/go-redis/v9"

// The scripts run atomically on the server. Keys they reach beyond KEYS (a
// delivery's message record, the record an index entry points to) are built
// from values stored under the same prefix, so the store needs a single
// Redis server (or primary), not a cluster.
//
// Redis does not roll back a script that fails half-way: every script that
// writes first checks everything that could make it stop (what exists, the
// type of each key it will write), then writes. A write can then fail only
// on a key of a type the store never writes; and the server refuses a
// script's writes for lack of memory or a failing disk at its first write
// only, before anything changed.

// commitScript applies a batch of the store's changes together with their
// audit entries (commit.go): every change of the batch and every entry, or
// none. KEYS = the chain's entries (list), head (hash of the last entry),
// the set of replicas, the chain's fence. ARGV = replica, expected length of
// the chain, expected head, expected fence, number of operations, an error
// to fail with after the checks and before any write (empty: none; fault
// injection for tests, Options.Fault), then per operation: its kind, how many arguments follow, and those: first its
// entries (how many, then the JSON and the hash of each, linked in Go to the
// expected head in batch order), then its own.
//
// It returns {'conflict'} when the chain is not where the entries were
// linked (another writer, or a fence: nothing written); {'skip', r1, …}
// when an operation would not apply (ri its reason, 0 for those that would:
// nothing written, the others are sent again); else {'ok', r1, …} with
// each operation's result.
var commitScript = goredis.NewScript(commitSrc)

const commitSrc = `
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[2])
  or (redis.call('GET', KEYS[2]) or '') ~= ARGV[3]
  or (redis.call('GET', KEYS[4]) or '') ~= ARGV[4] then
  return {'conflict'}
end

local function isnum(v) return v == false or v == nil or tonumber(v) ~= nil end
local function ishash(k)
  local t = redis.call('TYPE', k).ok
  return t == 'hash' or t == 'none'
end
local function iszset(k)
  local t = redis.call('TYPE', k).ok
  return t == 'zset' or t == 'none'
end

local check, write = {}, {}

-- accept: message, recipient index, record JSON, updated, number of
-- deliveries, from, id, '1' to index the consent, consent set, purge-at
-- score ('' for none: the message leaves the retention set, where a
-- denial of the same id may have put it), retention member, deliveries
-- JSON, set of recipients with a queue, retention set; then per delivery:
-- its queue, its record, id, score, created, envelope, recipient.
check.accept = function(a, st)
  local mk, ik = ARGV[a], ARGV[a + 1]
  if not ishash(mk) then return {'bad'} end
  local s = redis.call('HGET', mk, 'status')
  if s and s ~= 'denied' then
    return {'dup', redis.call('HMGET', mk, 'rec', 'status', 'attempts', 'updated', 'purged')}
  end
  if not iszset(ARGV[a + 13]) then return {'bad'} end
  for d = 0, tonumber(ARGV[a + 4]) - 1 do
    local b = a + 14 + d * 7
    if redis.call('EXISTS', ARGV[b + 1]) == 1 then return {'exists'} end
    if not iszset(ARGV[b]) then return {'bad'} end
  end
  local cur = redis.call('GET', ik)
  st.index = false
  if not cur then
    st.index = true
  elseif cur ~= mk then
    local cs = ishash(cur) and redis.call('HGET', cur, 'status')
    st.index = (not cs) or cs == 'denied'
  end
  return 0
end
write.accept = function(a, st)
  local mk, n = ARGV[a], tonumber(ARGV[a + 4])
  redis.call('DEL', mk)
  redis.call('HSET', mk, 'rec', ARGV[a + 2], 'status', 'accepted', 'attempts', 0,
    'updated', ARGV[a + 3], 'open', n, 'dlvs', ARGV[a + 11])
  if st.index then redis.call('SET', ARGV[a + 1], mk) end
  for d = 0, n - 1 do
    local b = a + 14 + d * 7
    redis.call('HSET', ARGV[b + 1], 'env', ARGV[b + 5], 'created', ARGV[b + 4],
      'from', ARGV[a + 5], 'mid', ARGV[a + 6], 'msg', mk, 'attempts', 0)
    redis.call('ZADD', ARGV[b], ARGV[b + 3], ARGV[b + 2])
    redis.call('SADD', ARGV[a + 12], ARGV[b + 6])
    if ARGV[a + 7] == '1' then redis.call('SADD', ARGV[a + 8], ARGV[b + 6]) end
  end
  if ARGV[a + 9] ~= '' then
    redis.call('ZADD', ARGV[a + 13], ARGV[a + 9], ARGV[a + 10])
  else
    redis.call('ZREM', ARGV[a + 13], ARGV[a + 10])
  end
  return 1
end

-- deny: message, recipient index, record JSON, updated, retention set,
-- forget-at score, retention member. The record is not written over an
-- acceptance; the entry is appended in either case.
check.deny = function(a, st)
  local mk = ARGV[a]
  if not ishash(mk) or not iszset(ARGV[a + 4]) then return {'bad'} end
  local s = redis.call('HGET', mk, 'status')
  st.accepted = s and s ~= 'denied'
  st.index = redis.call('EXISTS', ARGV[a + 1]) == 0
  return 0
end
write.deny = function(a, st)
  if st.accepted then return 0 end
  local mk = ARGV[a]
  redis.call('DEL', mk)
  redis.call('HSET', mk, 'rec', ARGV[a + 2], 'status', 'denied', 'attempts', 0,
    'updated', ARGV[a + 3], 'open', 0)
  if st.index then redis.call('SET', ARGV[a + 1], mk) end
  redis.call('ZADD', ARGV[a + 4], ARGV[a + 5], ARGV[a + 6])
  return 1
end

-- ack: queue, delivery record, delivery id, updated, the message key the
-- entry was built from.
local function endable(a, st, mk)
  if redis.call('TYPE', ARGV[a]).ok ~= 'zset' or not redis.call('ZSCORE', ARGV[a], ARGV[a + 2]) then
    return {'notfound'}
  end
  if not ishash(ARGV[a + 1]) or (redis.call('HGET', ARGV[a + 1], 'msg') or '') ~= mk or mk == '' then
    return {'notfound'}
  end
  st.msg = redis.call('TYPE', mk).ok == 'hash'
    and isnum(redis.call('HGET', mk, 'open')) and isnum(redis.call('HGET', mk, 'dead'))
  return 0
end
check.ack = function(a, st) return endable(a, st, ARGV[a + 4]) end
write.ack = function(a, st)
  local mk = ARGV[a + 4]
  redis.call('ZREM', ARGV[a], ARGV[a + 2])
  redis.call('DEL', ARGV[a + 1])
  if st.msg then
    local open = redis.call('HINCRBY', mk, 'open', -1)
    if open <= 0 and redis.call('HGET', mk, 'status') == 'accepted' then
      redis.call('HSET', mk, 'status', 'delivered', 'updated', ARGV[a + 3])
    end
  end
  return 1
end

-- dead: queue, delivery record, delivery id, updated (RFC 3339), the
-- message key, dead-letter set, member there, now (ms). The record stays
-- (envelope and attempts kept) with a 'dead' field.
check.dead = function(a, st)
  if redis.call('TYPE', ARGV[a + 5]).ok ~= 'zset' and redis.call('EXISTS', ARGV[a + 5]) == 1 then return {'bad'} end
  return endable(a, st, ARGV[a + 4])
end
write.dead = function(a, st)
  local mk = ARGV[a + 4]
  redis.call('ZREM', ARGV[a], ARGV[a + 2])
  redis.call('HSET', ARGV[a + 1], 'dead', ARGV[a + 3])
  redis.call('ZADD', ARGV[a + 5], ARGV[a + 7], ARGV[a + 6])
  if st.msg then
    redis.call('HINCRBY', mk, 'dead', 1)
    redis.call('HSET', mk, 'status', 'dead_lettered', 'updated', ARGV[a + 3])
  end
  return 1
end

-- What a purge decides from a status: none, denied, or accepted (an
-- acknowledgement or a dead letter since changes nothing of it).
local function statusClass(s)
  if not s or s == '' then return 'none' end
  if s == 'denied' then return 'denied' end
  return 'accepted'
end

-- purge: retention set, dead-letter set, key prefix, now (RFC 3339), now
-- (ms), number of messages; then per message: retention member, message
-- key, '1' to purge it, '1' to forget it, its next score ('' for none),
-- then as Go read them (what it decided from): its rec ('' if none), its
-- status ('' if none), '1' if it was purged, its deliveries JSON; its
-- recipient index key, how many deliveries, then recipient and id of
-- each. It is 'stale' when any of what was read changed since (of the
-- status, only its class).
check.purge = function(a, st)
  local P, now = ARGV[a + 2], tonumber(ARGV[a + 4])
  st.m = {}
  local i = a + 6
  for k = 1, tonumber(ARGV[a + 5]) do
    local m = {member = ARGV[i], mk = ARGV[i + 1], purge = ARGV[i + 2] == '1', forget = ARGV[i + 3] == '1',
      next = ARGV[i + 4], ik = ARGV[i + 9], dl = {}}
    local nd = tonumber(ARGV[i + 10])
    local score = redis.call('ZSCORE', ARGV[a], m.member)
    if not score or tonumber(score) > now then return {'stale'} end
    if not ishash(m.mk) then return {'stale'} end
    local f = redis.call('HMGET', m.mk, 'rec', 'status', 'purged', 'dlvs')
    if (f[1] or '') ~= ARGV[i + 5] or statusClass(f[2]) ~= statusClass(ARGV[i + 6])
      or (f[3] and '1' or '0') ~= ARGV[i + 7] or (f[4] or '') ~= ARGV[i + 8] then
      return {'stale'}
    end
    if m.purge or m.forget then
      for d = 0, nd - 1 do
        local r, id = ARGV[i + 11 + d * 2], ARGV[i + 12 + d * 2]
        local dk = P .. 'd:' .. r .. '\0' .. id
        if not iszset(P .. 'q:' .. r) then return {'bad'} end
        if ishash(dk) and redis.call('HGET', dk, 'msg') == m.mk then
          m.dl[#m.dl + 1] = {r, id, dk}
        end
      end
    end
    if m.forget then
      m.unindex = redis.call('TYPE', m.ik).ok == 'string' and redis.call('GET', m.ik) == m.mk
    end
    if m.next ~= '' and not tonumber(m.next) then return {'bad'} end
    st.m[k] = m
    i = i + 11 + nd * 2
  end
  if not iszset(ARGV[a + 1]) then return {'bad'} end
  return 0
end
write.purge = function(a, st)
  local P, out = ARGV[a + 2], {}
  for _, m in ipairs(st.m) do
    redis.call('ZREM', ARGV[a], m.member)
    local n, done = 0, 0
    for _, d in ipairs(m.dl) do
      n = n + redis.call('ZREM', P .. 'q:' .. d[1], d[2])
      n = n + redis.call('ZREM', ARGV[a + 1], d[1] .. '\0' .. d[2])
      redis.call('DEL', d[3])
    end
    if m.purge then
      done = 1
      redis.call('HSET', m.mk, 'purged', ARGV[a + 3], 'open', 0, 'dead', 0)
      redis.call('HDEL', m.mk, 'dlvs')
    end
    if m.forget then
      done = done + 2
      redis.call('DEL', m.mk)
      if m.unindex then redis.call('DEL', m.ik) end
    elseif m.next ~= '' then
      redis.call('ZADD', ARGV[a], m.next, m.member)
    end
    if done > 0 then
      out[#out + 1] = m.member
      out[#out + 1] = n
      out[#out + 1] = done
    end
  end
  return out
end

-- append: entries only.
check.append = function() return 0 end
write.append = function() return 1 end

local ops, i = {}, 7
for k = 1, tonumber(ARGV[5]) do
  local ne = tonumber(ARGV[i + 2])
  ops[k] = {kind = ARGV[i], e = i + 2, a = i + 3 + 2 * ne, st = {}}
  i = i + 2 + tonumber(ARGV[i + 1])
end

local out, skip = {'skip'}, false
for k, op in ipairs(ops) do
  local r = check[op.kind](op.a, op.st)
  out[k + 1] = r
  if r ~= 0 then skip = true end
end
if skip then return out end
if ARGV[6] ~= '' then return redis.error_reply(ARGV[6]) end

out = {'ok'}
for k, op in ipairs(ops) do out[k + 1] = write[op.kind](op.a, op.st) end
local entries, last = {}, nil
for _, op in ipairs(ops) do
  for j = 1, tonumber(ARGV[op.e]) do
    entries[#entries + 1] = ARGV[op.e + 2 * j - 1]
    last = ARGV[op.e + 2 * j]
  end
end
for j = 1, #entries, 500 do
  redis.call('RPUSH', KEYS[1], unpack(entries, j, math.min(j + 499, #entries)))
end
if last then
  redis.call('SET', KEYS[2], last)
  redis.call('SADD', KEYS[3], ARGV[1])
end
return out
`

// headScript: KEYS = a chain's entries, head and fence. Returns {length,
// head, fence}.
var headScript = goredis.NewScript(`
return {redis.call('LLEN', KEYS[1]), redis.call('GET', KEYS[2]) or '', redis.call('GET', KEYS[3]) or ''}
`)

// fenceScript is headScript after moving the chain's fence: a batch sent
// before it and not yet run by the server can no longer apply (its fence
// differs), so the head it returns says for good whether that batch did.
var fenceScript = goredis.NewScript(`
redis.call('INCR', KEYS[3])
return {redis.call('LLEN', KEYS[1]), redis.call('GET', KEYS[2]) or '', redis.call('GET', KEYS[3])}
`)

// endInfoScript: KEYS = a delivery record. Returns {env, created, from, mid,
// msg, the message's rec} (false where missing), or false when there is no
// such record; 'bad' when it is not a hash.
var endInfoScript = goredis.NewScript(`
local t = redis.call('TYPE', KEYS[1]).ok
if t == 'none' then return false end
if t ~= 'hash' then return 'bad' end
local f = redis.call('HMGET', KEYS[1], 'env', 'created', 'from', 'mid', 'msg')
local rec = false
if f[5] and redis.call('TYPE', f[5]).ok == 'hash' then rec = redis.call('HGET', f[5], 'rec') end
return {f[1], f[2], f[3], f[4], f[5], rec}
`)

// purgeDueScript: KEYS = retention set. ARGV = now (ms), at most how many,
// key prefix. Returns per message due (oldest purge time first) {member,
// rec, status, purged, dlvs}.
var purgeDueScript = goredis.NewScript(`
local out = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))) do
  local mk = ARGV[3] .. 'm:' .. member
  if redis.call('TYPE', mk).ok == 'hash' then
    local f = redis.call('HMGET', mk, 'rec', 'status', 'purged', 'dlvs')
    out[#out + 1] = {member, f[1], f[2], f[3], f[4]}
  else
    out[#out + 1] = {member, false, false, false, false}
  end
end
return out
`)

// messageToScript: KEYS = recipient index. Returns the fields of the record
// it points to, or nil.
var messageToScript = goredis.NewScript(`
local mk = redis.call('GET', KEYS[1])
if not mk then return false end
if redis.call('TYPE', mk).ok ~= 'hash' then return {mk} end
return redis.call('HMGET', mk, 'rec', 'status', 'attempts', 'updated', 'purged')
`)

// leaseScript: KEYS = queue. ARGV = now (ms), max, hidden-until score (ms),
// prefix of the recipient's delivery records. It first sorts the due
// deliveries into those it leases, index entries without a record (dropped)
// and records it cannot read (not a hash, fields missing or not numbers:
// left for Go to quarantine), then writes. Returns {leased, bad}: per leased
// delivery {id, attempts, envelope, created, from, message id}; the ids of
// the bad ones.
var leaseScript = goredis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local plan, bad = {}, {}
for _, id in ipairs(ids) do
  local dk = ARGV[4] .. id
  local t = redis.call('TYPE', dk).ok
  if t == 'none' then
    plan[#plan + 1] = {id = id}
  elseif t ~= 'hash' then
    bad[#bad + 1] = id
  else
    local f = redis.call('HMGET', dk, 'env', 'created', 'from', 'mid', 'msg', 'attempts')
    if not (f[1] and f[2] and f[3] and f[4] and f[5]) or (f[6] and not tonumber(f[6])) then
      bad[#bad + 1] = id
    else
      local p = {id = id, dk = dk, f = f, a = (tonumber(f[6]) or 0) + 1}
      if redis.call('TYPE', f[5]).ok == 'hash' then
        local cur = redis.call('HGET', f[5], 'attempts')
        p.raise = (not cur) or (tonumber(cur) ~= nil and p.a > tonumber(cur))
      end
      plan[#plan + 1] = p
    end
  end
end
local out = {}
for _, p in ipairs(plan) do
  if not p.dk then
    redis.call('ZREM', KEYS[1], p.id)
  else
    redis.call('HSET', p.dk, 'attempts', p.a)
    redis.call('ZADD', KEYS[1], ARGV[3], p.id)
    if p.raise then redis.call('HSET', p.f[5], 'attempts', p.a) end
    out[#out + 1] = {p.id, p.a, p.f[1], p.f[2], p.f[3], p.f[4]}
  end
end
return {out, bad}
`)

// quarantineScript: KEYS = a record, where to keep it. ARGV = a sorted set
// the record is a member of (empty: none), its member there. The record is
// renamed out of the way and leaves the set.
var quarantineScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('RENAME', KEYS[1], KEYS[2]) end
if ARGV[1] ~= '' then redis.call('ZREM', ARGV[1], ARGV[2]) end
return 1
`)

// releaseScript: KEYS = queue. ARGV = delivery id, visible-at score (ms).
// Returns 1 when moved, 0 when the recipient has no such delivery queued.
var releaseScript = goredis.NewScript(`
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
`)

// deadLettersScript: KEYS = dead-letter set. ARGV = prefix of delivery
// records ("<prefix>d:"). Returns per dead letter, oldest first, {member,
// env, created, from, mid, attempts, dead}, or {member} for a record that
// is not a hash.
var deadLettersScript = goredis.NewScript(`
local out = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local t = redis.call('TYPE', ARGV[1] .. member).ok
  if t == 'hash' then
    local f = redis.call('HMGET', ARGV[1] .. member, 'env', 'created', 'from', 'mid', 'attempts', 'dead')
    if f[1] then
      out[#out + 1] = {member, f[1], f[2], f[3], f[4], f[5], f[6]}
    end
  elseif t ~= 'none' then
    out[#out + 1] = {member}
  end
end
return out
`)

// requeueScript: KEYS = dead-letter set, queue, delivery record, set of
// recipients with a queue. ARGV = dead-letter member, delivery id, score
// (now, ms), now (RFC 3339), recipient. Returns 1 when requeued, 0 when
// there is no such dead letter (or its record cannot be read).
var requeueScript = goredis.NewScript(`
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if redis.call('TYPE', KEYS[3]).ok ~= 'hash' then return 0 end
local mk = redis.call('HGET', KEYS[3], 'msg')
if not mk then return 0 end
local msg = redis.call('TYPE', mk).ok == 'hash'
if msg then
  local d = redis.call('HGET', mk, 'dead')
  msg = (not d) or tonumber(d) ~= nil
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], 'dead')
redis.call('HSET', KEYS[3], 'attempts', 0)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[5])
if msg then
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

// incrScript: KEYS = counter. ARGV = time to live (ms). Counts one and
// makes sure the counter expires.
var incrScript = goredis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
`)

#!lua name=xkv1
-- The kv contract's commit on Redis, generic: no rule of the domain is
-- here. A bucket is a hash (key -> "version:value") and a sorted set of its
-- keys (score 0, for ordered scans by ZRANGEBYLEX).
--
-- KEYS[1] is the revision counter; bucket b's hash is KEYS[2b] and its
-- sorted set KEYS[2b+1]. ARGV[1] is the number of guards; then per guard
-- (bucket, key, version read, '' for absent); then per write (op 'p' or
-- 'd', bucket, key, value).

local function version(h, k)
  local v = redis.call('HGET', h, k)
  if not v then
    return ''
  end
  return string.sub(v, 1, string.find(v, ':', 1, true) - 1)
end

local function holds(keys, args)
  for i = 2, 1 + 3 * tonumber(args[1]), 3 do
    if version(keys[2 * tonumber(args[i])], args[i + 1]) ~= args[i + 2] then
      return false
    end
  end
  return true
end

local function apply(keys, args)
  if not holds(keys, args) then
    return 0
  end
  -- Redis does not roll a function back: refuse a key of the wrong type
  -- before the first write, so that no write can fail after another.
  for i = 2, #keys do
    local t = redis.call('TYPE', keys[i])['ok']
    local want = (i % 2 == 0) and 'hash' or 'zset'
    if t ~= 'none' and t ~= want then
      return redis.error_reply('kv: ' .. keys[i] .. ' is a ' .. t .. ', not a ' .. want)
    end
  end
  -- Versions are commit revisions, never reused: a key deleted and written
  -- again does not come back to a version a guard holds. A failover can
  -- erase the last revisions of the old primary and the new one counts
  -- them again, so a version is also named by the primary's replication
  -- id, which a promotion changes: a guard read before a failover never
  -- holds on a write made after it.
  local epoch = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
  local rev = string.sub(epoch or '', 1, 12) .. '.' .. string.format('%d', redis.call('INCR', keys[1])) .. ':'
  for i = 2 + 3 * tonumber(args[1]), #args, 4 do
    local b, k = tonumber(args[i + 1]), args[i + 2]
    if args[i] == 'p' then
      redis.call('HSET', keys[2 * b], k, rev .. args[i + 3])
      redis.call('ZADD', keys[2 * b + 1], 0, k)
    else
      redis.call('HDEL', keys[2 * b], k)
      redis.call('ZREM', keys[2 * b + 1], k)
    end
  end
  return 1
end

redis.register_function('xkv1_apply', apply)
redis.register_function{
  function_name = 'xkv1_check',
  callback = function(keys, args)
    return holds(keys, args) and 1 or 0
  end,
  flags = { 'no-writes' },
}

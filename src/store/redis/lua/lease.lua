-- lease.lua: releases or renews one lease on every concurrency counter of
-- a check (KEYS, sorted sets of concurrency.lua, all in one slot); after
-- prelude.lua. It mirrors src/store/memory.rs (`MemoryStore::lease_now`).
--
-- ARGV[1] now_us: '' to read the server clock (TIME), else that integer
-- ARGV[2] 'release' or 'renew'
-- ARGV[3] the lease's member, `<number>:<units>`
-- ARGV[3 + i] KEYS[i]'s lease lifetime (µs), for a renewal
--
-- A release removes the member everywhere; it answers {1, now} when some
-- counter held it unexpired, else {0, 0}. A renewal moves the member's
-- expiry to now + lifetime on every counter when every one holds it
-- unexpired, and answers {1, the earliest new expiry}; else it changes
-- nothing and answers {0, 0}. A key lives until its last lease expires.
local now = time_now(ARGV[1])
local renew = ARGV[2] == 'renew'
local member = ARGV[3]

local held = {}
local any, all = false, true
for i = 1, #KEYS do
  local score = redis.call('ZSCORE', KEYS[i], member)
  held[i] = score ~= false and score ~= nil and tonumber(score) > now
  any = any or held[i]
  all = all and held[i]
end

if not renew then
  for i = 1, #KEYS do
    redis.call('ZREM', KEYS[i], member)
  end
  if any then
    return {1, now}
  end
  return {0, 0}
end

if not all then
  return {0, 0}
end
local earliest = nil
for i = 1, #KEYS do
  local expires = now + tonumber(ARGV[3 + i])
  redis.call('ZADD', KEYS[i], 'XX', num(expires), member)
  local last = tonumber(redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')[2])
  redis.call('PEXPIRE', KEYS[i], num(idiv(last - now + 999, 1000) + 1))
  if earliest == nil or expires < earliest then
    earliest = expires
  end
end
return {1, earliest}

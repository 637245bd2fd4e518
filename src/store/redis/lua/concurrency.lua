-- concurrency.lua: leases of work in flight, a Lua 5.1 port of
-- src/core/concurrency.rs (`concurrency::acquire`) for Redis 7. It must
-- make exactly the decisions of the Rust function.
--
-- KEYS[1]  the key's leases, a SORTED SET: member `<number>:<units>`,
--          score the lease's expiry (µs).
-- limit    the units that may be in flight; window: the lease's lifetime
--          (lease_ttl, µs); cost: the units this check takes.
-- `lease`  (prelude.lua) the number of the lease an allowed check takes:
--          '0' unless once.lua set it from the lease's token.
--
-- Leases expired at `now` are removed first (they are gone whatever this
-- check decides). The key expires with its last lease, 1 ms after it.
--
-- Returns {allowed (1|0), limit, remaining, reset_after_us (until the last
--          lease expires), retry_after_us (until enough leases expire: an
--          upper bound; -1: never), now_us}.

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(now))
local held = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local used = 0
local last = 0
for i = 1, #held, 2 do
  used = used + tonumber(string.match(held[i], ':(%d+)$'))
  last = math.max(last, tonumber(held[i + 1]))
end

local allowed = 0
local retry_after = 0
if cost > limit then
  retry_after = -1
elseif used + cost <= limit then
  allowed = 1
  local expires = now + window
  last = math.max(last, expires)
  if write then
    put(write, 'ZADD', KEYS[1], num(expires), lease .. ':' .. num(cost))
    put(write, 'PEXPIRE', KEYS[1], num(idiv(last - now + 999, 1000) + 1))
  end
  used = used + cost
else
  -- Sorted by expiry: free units lease by lease until the cost fits.
  local left = used
  for i = 1, #held, 2 do
    left = left - tonumber(string.match(held[i], ':(%d+)$'))
    if left + cost <= limit then
      retry_after = math.max(0, tonumber(held[i + 1]) - now)
      break
    end
  end
end
local reset_after = 0
if last > 0 then
  reset_after = math.max(0, last - now)
end

return reply(allowed, limit, math.max(0, limit - used), reset_after, retry_after, now)

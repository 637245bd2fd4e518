-- token_bucket.lua: the token bucket, a Lua 5.1 port of
-- src/core/token_bucket.rs (`token_bucket::check`) for Redis 7, run with
-- EVALSHA. It must make exactly the decisions of the Rust function: same
-- `allowed`, `remaining`, `reset_after_us`, `retry_after_us`, same state.
--
-- KEYS[1]  the key's state, a STRING `used:updated` (see `load` in
--          prelude.lua; an older release's HASH of the same fields is read
--          too):
--            used     tokens taken and not yet earned back (0 = full bucket)
--            updated  the time (µs) from which the next token is earned
--          A missing key is the Rust `State::default()` (0).
--
-- ARGV[1]  limit (tokens)
-- ARGV[2]  window_us (unused: the refill rate is ARGV[3])
-- ARGV[3]  emission_interval_us = ceil(window_us / limit), from the caller
-- ARGV[4]  cost (>= 1; any cost above the limit is never allowed)
-- ARGV[5]  now_us: '' to read the server clock (TIME), else that integer
--
-- TTL: when reset_after_us is 0 (a full bucket, same as a never-seen key)
-- the key is deleted; otherwise the state is written and the key expires
-- floor((reset_after_us + 999) / 1000) + 1 ms later, just after the bucket
-- is full again.
--
-- Returns {allowed (1|0), limit, remaining, reset_after_us,
--          retry_after_us (-1: never, the cost is above the limit), now_us}.
--
-- Arithmetic: integers only, every value below 2^53 (exact in doubles);
-- integer division through `divmod`, never a bare `/`.


local stored = load(KEYS[1], {'used', 'updated'}) or {0, 0}
local used = stored[1]
local updated = stored[2]

-- Refill. A `now` before `updated` (clock stepped back) counts as `updated`.
local now_e = math.max(now, updated)
local earned = idiv(now_e - updated, interval)
if earned >= used then
  -- Full: the part of an interval already elapsed is dropped.
  used = 0
  updated = now_e
else
  -- Not full: carry the part of an interval already elapsed.
  used = used - earned
  updated = updated + earned * interval
end
local partial = now_e - updated
local lag = now_e - now
-- Microseconds from `now` until `units` more tokens have been earned
-- (units <= limit, so units * interval <= limit * interval < 2^53):
-- math.max(0, units * interval - partial) + lag, written out twice below.

local allowed = 0
local retry_after
if cost > limit then
  retry_after = -1
elseif used + cost <= limit then
  allowed = 1
  used = used + cost
  retry_after = 0
else
  retry_after = math.max(0, (used + cost - limit) * interval - partial) + lag
end
local reset_after = 0
if used > 0 then
  reset_after = math.max(0, used * interval - partial) + lag
end

if write then
  if reset_after == 0 then
    put(write, 'DEL', KEYS[1])
  else
    put(write, 'SET', KEYS[1], num(used) .. ':' .. num(updated), 'PX', num(idiv(reset_after + 999, 1000) + 1))
  end
end

return reply(allowed, limit, math.max(0, limit - used), reset_after, retry_after, now)

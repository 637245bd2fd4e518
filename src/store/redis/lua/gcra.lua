-- gcra.lua: GCRA (generic cell rate algorithm), a Lua 5.1 port of
-- src/core/gcra.rs (`gcra::check`) for Redis 7, run with EVALSHA. It must
-- make exactly the decisions of the Rust function: same `allowed`,
-- `remaining`, `reset_after_us`, `retry_after_us`, same state.
--
-- KEYS[1]  the key's state, a STRING `tat` (see `load` in prelude.lua; an
--          older release's HASH of the same field is read too):
--            tat  the theoretical arrival time (µs)
--          A missing key is the Rust `State::default()` (0).
--
-- ARGV[1]  limit
-- ARGV[2]  window_us (unused: burst = limit * ARGV[3])
-- ARGV[3]  emission_interval_us = ceil(window_us / limit), from the caller
-- ARGV[4]  cost (>= 1; any cost above the limit is never allowed)
-- ARGV[5]  now_us: '' to read the server clock (TIME), else that integer
--
-- TTL: when reset_after_us (= tat - now) is 0 the key is deleted (an idle
-- key); otherwise `tat` is written and the key expires
-- floor((reset_after_us + 999) / 1000) + 1 ms later, just after `tat`.
--
-- Returns {allowed (1|0), limit, remaining, reset_after_us,
--          retry_after_us (-1: never, the cost is above the limit), now_us}.
--
-- Arithmetic: integers only, every value below 2^53 (exact in doubles);
-- integer division through `divmod`, never a bare `/`. `cost * interval` is
-- only computed for cost <= limit, where it is at most the burst.


-- limit * ceil(window / limit) < window + limit: well below 2^53.
local burst = limit * interval

-- A `tat` in the past counts as `now`; storing max(tat, now) remembers the
-- latest time even when nothing is admitted.
local tat = math.max((load(KEYS[1], {'tat'}) or {0})[1], now)

local allowed = 0
local ahead
local retry_after
if cost > limit then
  ahead = tat - now
  retry_after = -1
else
  local new_tat = tat + cost * interval
  if new_tat - now <= burst then
    tat = new_tat
    allowed = 1
    ahead = new_tat - now
    retry_after = 0
  else
    ahead = tat - now
    retry_after = new_tat - now - burst
  end
end
local reset_after = ahead

if write then
  if reset_after == 0 then
    put(write, 'DEL', KEYS[1])
  else
    put(write, 'SET', KEYS[1], num(tat), 'PX', num(idiv(reset_after + 999, 1000) + 1))
  end
end

return reply(allowed, limit, idiv(math.max(0, burst - ahead), interval), reset_after, retry_after, now)

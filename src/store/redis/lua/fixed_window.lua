-- fixed_window.lua: the fixed window, a Lua 5.1 port of
-- src/core/fixed_window.rs (`fixed_window::check`) for Redis 7, run with
-- EVALSHA. It must make exactly the decisions of the Rust function: same
-- `allowed`, `remaining`, `reset_after_us`, `retry_after_us`, same state.
--
-- KEYS[1]  the key's state, a STRING `window_start:count` (see `load` in
--          prelude.lua; an older release's HASH of the same fields is read
--          too):
--            window_start  start (µs) of the window `count` belongs to, a
--                          multiple of window_us
--            count         the cost admitted in that window
--          A missing key or field is the Rust `State::default()` (0).
--
-- ARGV[1]  limit
-- ARGV[2]  window_us
-- ARGV[3]  emission_interval_us (unused)
-- ARGV[4]  cost (>= 1; any cost above the limit is never allowed)
-- ARGV[5]  now_us: '' to read the server clock (TIME), else that integer
--
-- TTL: when reset_after_us is 0 (nothing counted in the window) the key is
-- deleted; otherwise the state is written and the key expires
-- floor((reset_after_us + 999) / 1000) + 1 ms later, just after the window
-- ends.
--
-- Returns {allowed (1|0), limit, remaining, reset_after_us,
--          retry_after_us (-1: never, the cost is above the limit), now_us}.
--
-- Arithmetic: integers only, every value below 2^53 (exact in doubles);
-- integer division and remainder through `divmod`, never a bare `/` or `%`.


local stored = load(KEYS[1], {'window_start', 'count'}) or {0, 0}
local window_start = stored[1]
local count = stored[2]

-- A clock stepping back stays in the stored window.
local _, into = divmod(now, window)
local start = math.max(now - into, window_start)
if start ~= window_start then
  window_start = start
  count = 0
end
local until_end = math.max(0, start + window - now)

local allowed = 0
local retry_after
if cost > limit then
  retry_after = -1
elseif count + cost <= limit then
  allowed = 1
  count = count + cost
  retry_after = 0
else
  retry_after = until_end
end
local reset_after = 0
if count > 0 then
  reset_after = until_end
end

if write then
  if reset_after == 0 then
    put(write, 'DEL', KEYS[1])
  else
    put(write, 'SET', KEYS[1], num(window_start) .. ':' .. num(count), 'PX', num(idiv(reset_after + 999, 1000) + 1))
  end
end

return reply(allowed, limit, math.max(0, limit - count), reset_after, retry_after, now)

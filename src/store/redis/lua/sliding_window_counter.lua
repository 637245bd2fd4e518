-- sliding_window_counter.lua: the sliding window counter, a Lua 5.1 port of
-- src/core/sliding_window_counter.rs (`sliding_window_counter::check`) for
-- Redis 7, run with EVALSHA. It must make exactly the decisions of the Rust
-- function: same `allowed`, `remaining`, `reset_after_us`,
-- `retry_after_us`, same state.
--
-- KEYS[1]  the key's state, a STRING `window_start:previous:current`
--          (see `load` in prelude.lua; an older release's HASH of the same
--          fields is read too):
--            window_start  start (µs) of the current window, a multiple of
--                          window_us
--            previous      the cost admitted in the window before it
--            current       the cost admitted in the current window
--          A missing key or field is the Rust `State::default()` (0).
--
-- ARGV[1]  limit
-- ARGV[2]  window_us (a whole number of milliseconds)
-- ARGV[3]  emission_interval_us (unused)
-- ARGV[4]  cost (>= 1; any cost above the limit is never allowed)
-- ARGV[5]  now_us: '' to read the server clock (TIME), else that integer
--
-- TTL: when reset_after_us is 0 (both counts 0) the key is deleted;
-- otherwise the state is written and the key expires
-- floor((reset_after_us + 999) / 1000) + 1 ms later, just after the last
-- admitted cost stops being weighed.
--
-- Returns {allowed (1|0), limit, remaining, reset_after_us,
--          retry_after_us (-1: never, the cost is above the limit), now_us}.
--
-- Arithmetic: integers only, every value at most 2^53 (exact in doubles).
-- The products count × milliseconds are at most limit × window_ms <= 2^53
-- (the policy enforces it); Rust computes them in u128. Divisions go through
-- `divmod`, which is exact up to 2^53, and ceil(a / b) is floor(a / b) plus
-- one when the remainder is positive (never (a + b - 1) / b, which could
-- pass 2^53).

local window_ms = idiv(window, 1000)

local state = load(KEYS[1], {'window_start', 'previous', 'current'}) or {0, 0, 0}
local stored = state[1]
local stored_previous = state[2]
local stored_current = state[3]

-- ceil(count × left_ms / window_ms): the previous window's count still
-- inside the sliding window when `left_ms` of it remain covered.
local function weigh(count, left_ms)
  return ceil_div(count * left_ms, window_ms)
end

-- The first whole millisecond `e` of a window at which
-- weigh(count, window_ms - e) <= room: window_ms - floor(room × window_ms /
-- count), at most window_ms.
local function fits_at_ms(count, room)
  if count == 0 then
    return 0
  end
  local kept = idiv(room * window_ms, count)
  return window_ms - math.min(kept, window_ms)
end

-- Roll the windows forward. A clock stepping back stays in the stored one.
local _, into = divmod(now, window)
local start = math.max(now - into, stored)
local previous, current
if start == stored then
  previous, current = stored_previous, stored_current
elseif start == stored + window then
  previous, current = stored_current, 0
else
  previous, current = 0, 0
end

-- Whole milliseconds elapsed in the current window (0 before its start).
local elapsed_ms = idiv(math.max(0, now - start), 1000)
local weighted = weigh(previous, math.max(0, window_ms - elapsed_ms))
local used = weighted + current
-- Microseconds from `now` to `offset + ms` milliseconds after `start`.
local function until_(offset, ms)
  return math.max(0, start + offset + ms * 1000 - now)
end

local allowed = 0
local remaining
local retry_after
if cost <= limit and used + cost <= limit then
  allowed = 1
  current = current + cost
  remaining = limit - used - cost
  retry_after = 0
elseif cost > limit then
  remaining = math.max(0, limit - used)
  retry_after = -1
elseif current + cost <= limit then
  -- Fits next to `current` once `previous` has decayed enough.
  remaining = math.max(0, limit - used)
  retry_after = until_(0, fits_at_ms(previous, limit - current - cost))
else
  -- Only fits in the next window, where `current` becomes `previous`.
  remaining = math.max(0, limit - used)
  retry_after = until_(window, fits_at_ms(current, limit - cost))
end
local reset_after = 0
if current > 0 then
  reset_after = until_(2 * window, 0)
elseif previous > 0 then
  reset_after = until_(window, 0)
end

if write then
  if reset_after == 0 then
    put(write, 'DEL', KEYS[1])
  else
    put(write, 'SET', KEYS[1], num(start) .. ':' .. num(previous) .. ':' .. num(current), 'PX',
      num(idiv(reset_after + 999, 1000) + 1))
  end
end

return reply(allowed, limit, remaining, reset_after, retry_after, now)

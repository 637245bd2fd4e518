-- sliding_window_log.lua: the sliding window log, a Lua 5.1 port of
-- src/core/sliding_window_log.rs (`sliding_window_log::check`) for Redis 7,
-- run with EVALSHA. It must make exactly the decisions of the Rust
-- function: same `allowed`, `remaining`, `reset_after_us`,
-- `retry_after_us`, same state (entries in the same order, evicted by the
-- same comparison).
--
-- KEYS[1]  the key's scalar state, a HASH:
--            used    the sum of the costs in the log
--            latest  the latest time (µs) the key was checked at
--          A missing key or field is the Rust `State::default()` (0).
-- KEYS[2]  the log, a LIST of "<time_us>:<cost>" strings, oldest at the
--          head (evicted with LPOP, appended with RPUSH); missing = empty.
--          Both keys must be in the same cluster slot (a hash tag).
--
-- ARGV[1]  limit
-- ARGV[2]  window_us
-- ARGV[3]  emission_interval_us (unused)
-- ARGV[4]  cost (>= 1; any cost above the limit is never allowed)
-- ARGV[5]  now_us: '' to read the server clock (TIME), else that integer
--
-- TTL: when reset_after_us is 0 (the log is empty) both keys are deleted;
-- otherwise the state is written and both keys expire
-- floor((reset_after_us + 999) / 1000) + 1 ms later, just after the newest
-- entry slides out of the window.
--
-- Returns {allowed (1|0), limit, remaining, reset_after_us,
--          retry_after_us (-1: never, the cost is above the limit), now_us}.
--
-- Arithmetic: integers only, every value below 2^53 (exact in doubles);
-- integer division through `divmod`, never a bare `/`. The log is read in
-- chunks of CHUNK entries, so a check costs O(entries evicted) plus, when
-- denied, O(entries) to find the retry time, as in Rust.

local CHUNK = 128

-- One log entry: its time and its cost.
local function entry(s)
  local at, units = string.match(s, '^(%d+):(%d+)$')
  return tonumber(at), tonumber(units)
end


local stored = redis.call('HMGET', KEYS[1], 'used', 'latest')
local used = tonumber(stored[1]) or 0
local latest = tonumber(stored[2]) or 0

-- A clock stepping back counts as the latest time seen.
local now_e = math.max(now, latest)
latest = now_e

-- Drop the entries that have slid out of (now - window, now]: those with
-- time + window <= now_e, from the head.
-- Evicted entries are popped; otherwise (no `write`, or writes kept for
-- later) they are only skipped, so the list reads as it stands.
local skip = 0
while true do
  local chunk = redis.call('LRANGE', KEYS[2], skip, skip + CHUNK - 1)
  local gone = 0
  for i = 1, #chunk do
    local at, units = entry(chunk[i])
    if at + window > now_e then
      break
    end
    gone = gone + 1
    used = math.max(0, used - units)
  end
  if gone > 0 then
    if write == true then
      redis.call('LPOP', KEYS[2], gone)
    else
      skip = skip + gone
      if write then
        put(write, 'LPOP', KEYS[2], gone)
      end
    end
  end
  if gone < CHUNK then
    break
  end
end

local allowed = 0
local retry_after
local newest -- the time of the newest entry, if any
if cost <= limit and used + cost <= limit then
  allowed = 1
  if write then
    put(write, 'RPUSH', KEYS[2], num(latest) .. ':' .. num(cost))
  end
  used = used + cost
  retry_after = 0
  newest = latest
else
  if cost > limit then
    retry_after = -1
  else
    -- The oldest entries whose costs, once evicted, make room.
    local need = used + cost - limit
    local freed = 0
    local offset = skip
    retry_after = -1
    while retry_after == -1 do
      local chunk = redis.call('LRANGE', KEYS[2], offset, offset + CHUNK - 1)
      for i = 1, #chunk do
        local at, units = entry(chunk[i])
        freed = freed + units
        if freed >= need then
          retry_after = math.max(0, at + window - now)
          break
        end
      end
      if #chunk < CHUNK then
        break
      end
      offset = offset + CHUNK
    end
  end
  local tail = redis.call('LRANGE', KEYS[2], -1, -1)
  if skip > 0 and #tail > 0 and redis.call('LLEN', KEYS[2]) <= skip then
    tail = {} -- every entry was skipped as evicted
  end
  if #tail > 0 then
    newest = entry(tail[1])
  end
end
local reset_after = 0
if newest ~= nil then
  reset_after = math.max(0, newest + window - now)
end

if write then
  if reset_after == 0 then
    put(write, 'DEL', KEYS[1], KEYS[2])
  else
    local ttl = num(idiv(reset_after + 999, 1000) + 1)
    put(write, 'HSET', KEYS[1], 'used', num(used), 'latest', num(latest))
    put(write, 'PEXPIRE', KEYS[1], ttl)
    put(write, 'PEXPIRE', KEYS[2], ttl)
  end
end

return reply(allowed, limit, math.max(0, limit - used), reset_after, retry_after, now)

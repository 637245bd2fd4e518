-- once.lua: a report (a charge after the work, or a refund) on every limit
-- of a rule, or a check that is applied at most once per id; after
-- prelude.lua, the five algorithms as functions and multi.lua (see
-- src/store/redis/scripts.rs). It mirrors src/store/memory.rs
-- (`MemoryStore::apply_now`) and src/core/multi.rs (`report_all`).
--
-- ARGV[1] now_us: '' to read the server clock (TIME), else that integer
-- ARGV[2] 'r' a report, 'c' a check
-- ARGV[3] a report's units (signed, never 0: negative gives back); for a
--         check, the number of the lease its concurrency limits take ('0')
-- ARGV[4] the id's lifetime in ms, '0' when the call has no id
-- ARGV[5...] the check of multi.lua: cost, consume, the number of limits,
--         five per limit (a report sends cost 1 and consume 0: it reads
--         its limits as a peek once charged)
-- KEYS: every limit's keys, limit after limit, then the id's key when
--       there is an id; all in one slot.
--
-- An id already applied (its key exists) makes the call a duplicate:
-- nothing is charged or consumed, and the limits are read as a peek.
-- Otherwise a report charges every limit, even past its limit, and the id
-- is kept; a check decides as multi.lua, and keeps the id only when it
-- consumed.
--
-- Returns {duplicate (1|0), the replies of multi.lua's check, one per limit}.

-- How far a debt reaches: 2^50 µs or units (src/core/policy.rs, MAX_DEBT).
local MAX_DEBT = 1125899906842624

-- Each `charge_*` mirrors its algorithm's `charge` in src/core; it writes
-- the state without a lifetime, which is set once the state is read back.
local function charge_token_bucket(key, limit, window, interval, units, now)
  local stored = load(key, {'used', 'updated'}) or {0, 0}
  local used, updated = stored[1], stored[2]
  local now_e = math.max(now, updated)
  local earned = idiv(now_e - updated, interval)
  if earned >= used then
    used = 0
    updated = now_e
  else
    used = used - earned
    updated = updated + earned * interval
  end
  if units < 0 then
    used = math.max(0, used + units)
    if used == 0 then
      updated = now_e
    end
  else
    local cap = math.max(limit, idiv(MAX_DEBT, interval), used)
    used = math.min(used + units, cap)
  end
  redis.call('SET', key, num(used) .. ':' .. num(updated))
end

local function charge_gcra(key, limit, window, interval, units, now)
  local tat = math.max((load(key, {'tat'}) or {0})[1], now)
  local ahead = tat - now
  local cap = math.max(limit, idiv(MAX_DEBT, interval))
  local moved = math.min(math.abs(units), cap) * interval
  if units < 0 then
    ahead = math.max(0, ahead - moved)
  else
    ahead = math.min(ahead + moved, math.max(cap * interval, ahead))
  end
  redis.call('SET', key, num(now + ahead))
end

local function charge_fixed_window(key, limit, window, interval, units, now)
  local stored = load(key, {'window_start', 'count'}) or {0, 0}
  local window_start, count = stored[1], stored[2]
  local _, into = divmod(now, window)
  local start = math.max(now - into, window_start)
  if start ~= window_start then
    window_start = start
    count = 0
  end
  if units < 0 then
    count = math.max(0, count + units)
  else
    count = math.min(count + units, math.max(limit, MAX_DEBT, count))
  end
  redis.call('SET', key, num(window_start) .. ':' .. num(count))
end

local function charge_sliding_window_counter(key, limit, window, interval, units, now)
  local stored = load(key, {'window_start', 'previous', 'current'}) or {0, 0, 0}
  local _, into = divmod(now, window)
  local start = math.max(now - into, stored[1])
  local previous, current
  if start == stored[1] then
    previous, current = stored[2], stored[3]
  elseif start == stored[1] + window then
    previous, current = stored[3], 0
  else
    previous, current = 0, 0
  end
  if units < 0 then
    local from_current = math.min(-units, current)
    current = current - from_current
    previous = math.max(0, previous - (-units - from_current))
  else
    local cap = math.max(limit, idiv(MAX_DEBT, math.max(1, idiv(window, 1000))), current)
    current = math.min(current + units, cap)
  end
  redis.call('SET', key, num(start) .. ':' .. num(previous) .. ':' .. num(current))
end

local charges = {charge_token_bucket, charge_gcra, charge_fixed_window, charge_sliding_window_counter}

local now = time_now(ARGV[1])
local report = ARGV[2] == 'r'
local units = tonumber(ARGV[3])
if not report then
  lease = ARGV[3]
end
local id_ttl = ARGV[4]
local id_key = nil
if id_ttl ~= '0' then
  id_key = KEYS[#KEYS]
end

local duplicate = 0
if id_key then
  if report then
    if not redis.call('SET', id_key, '1', 'NX', 'PX', id_ttl) then
      duplicate = 1
    end
  elseif redis.call('EXISTS', id_key) == 1 then
    duplicate = 1
  end
end

if duplicate == 1 then
  -- A peek: one unit, nothing consumed.
  ARGV[5] = '1'
  ARGV[6] = '0'
  local replies = check_limits(5, 1, now)
  return {1, replies}
end

if not report then
  local replies = check_limits(5, 1, now)
  local all = true
  for _, reply in ipairs(replies) do
    if reply[1] ~= 1 then
      all = false
    end
  end
  if all and id_key and ARGV[6] == '1' then
    redis.call('SET', id_key, '1', 'PX', id_ttl)
  end
  return {0, replies}
end

-- A report: charge every limit, read them back as a peek, then give each
-- state the lifetime its numbers say (or drop it when it is full).
local count = tonumber(ARGV[7])
local a, k = 8, 1
local first_keys = {}
for i = 1, count do
  local charge = charges[tonumber(ARGV[a])]
  first_keys[i] = KEYS[k]
  charge(KEYS[k], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), units, now)
  k = k + tonumber(ARGV[a + 4])
  a = a + 5
end
local replies = check_limits(5, 1, now)
for i = 1, count do
  local reset_after = replies[i][4]
  if reset_after == 0 then
    redis.call('DEL', first_keys[i])
  else
    redis.call('PEXPIRE', first_keys[i], idiv(reset_after + 999, 1000) + 1)
  end
end
return {0, replies}

-- prelude.lua: shared by every script, prepended at build time (see
-- src/store/redis/scripts.rs). Defines the integer helpers and reads the
-- common arguments:
--   ARGV[1] limit, ARGV[2] window_us, ARGV[3] emission_interval_us,
--   ARGV[4] cost, ARGV[5] now_us ('' reads the server clock with TIME).
-- Arithmetic: integers only, every value below 2^53 (exact in doubles);
-- integer division through `divmod`, never a bare `/`.

-- floor(a / b) and a % b for integers 0 <= a <= 2^53, b >= 1, exactly: the
-- double quotient is off by at most one, so start one below it (where
-- q * b <= a stays exact) and step up.
local function divmod(a, b)
  local q = math.floor(a / b) - 1
  if q < 0 then q = 0 end
  local r = a - q * b
  while r >= b do
    q = q + 1
    r = r - b
  end
  return q, r
end

local function idiv(a, b)
  local q = divmod(a, b)
  return q
end

-- ceil(a / b) as floor plus one when there is a remainder; never
-- (a + b - 1) / b, which can pass 2^53.
local function ceil_div(a, b)
  local q, r = divmod(a, b)
  if r > 0 then q = q + 1 end
  return q
end

-- A number as Redis should store it: all digits, never 1.7e+15.
local function num(s)
  return string.format('%.0f', s)
end

local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local now
if ARGV[5] == nil or ARGV[5] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[5])
end


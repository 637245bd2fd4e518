-- prelude.lua: shared by every script, prepended at build time (see
-- src/store/redis/scripts.rs). Defines the integer helpers; arguments.lua
-- (one check) or batch.lua (several) provides limit, window, interval,
-- cost and now to the algorithm.
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

-- The number of the lease a `concurrency` limit takes when it allows (see
-- concurrency.lua): '0' unless once.lua sets it from the lease's token.
local lease = '0'

-- A number as Redis should store it: all digits, never 1.7e+15.
local function num(s)
  return string.format('%.0f', s)
end

-- The time of a check in microseconds: `arg` when given (tests that compare
-- the scripts with the Rust core at chosen times), else the server's clock.
local function time_now(arg)
  if arg == nil or arg == '' then
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return tonumber(arg)
end

-- A state's numbers, kept as one string `a:b:c` (one `GET`, and one `SET`
-- with its TTL, instead of a hash's `HMGET`, `HSET` and `PEXPIRE`): a table
-- of numbers, or nil for a missing key. A state written by an older release
-- as a hash is read from its `fields` (WRONGTYPE for `GET`); the next write
-- replaces it with a string.
local function load(key, fields)
  local value = redis.pcall('GET', key)
  if not value then
    return nil
  end
  if type(value) == 'table' then
    local stored = redis.call('HMGET', key, unpack(fields))
    local out = {}
    for i = 1, #fields do
      out[i] = tonumber(stored[i]) or 0
    end
    return out
  end
  local out, n = {}, 0
  for field in string.gmatch(value, '[^:]+') do
    n = n + 1
    out[n] = tonumber(field)
  end
  return out
end

-- A write of an algorithm: done now when `write` is true, or kept in the
-- table `write` (a check of several limits, see multi.lua: its writes are
-- done once every limit has allowed, without deciding again). The
-- algorithms guard every write with `if write then`.
local function put(write, ...)
  if write == true then
    return redis.call(...)
  end
  write[#write + 1] = {...}
end

-- An algorithm's answer: {allowed (1|0), limit, remaining, reset_after_us,
-- retry_after_us (-1: never), now_us}, the reply of a single check.
-- batch_head.lua replaces it to append to one flat reply instead.
local function reply(allowed, limit, remaining, reset_after, retry_after, now)
  return {allowed, limit, remaining, reset_after, retry_after, now}
end

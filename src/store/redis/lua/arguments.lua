-- arguments.lua: the arguments of one check, after prelude.lua and before
-- the algorithm (see src/store/redis/scripts.rs):
--   ARGV[1] limit, ARGV[2] window_us, ARGV[3] emission_interval_us,
--   ARGV[4] cost, ARGV[5] now_us ('' reads the server clock with TIME).
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


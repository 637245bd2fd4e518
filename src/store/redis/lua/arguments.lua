-- arguments.lua: the arguments of one check, after prelude.lua and before
-- the algorithm (see src/store/redis/scripts.rs):
--   ARGV[1] limit, ARGV[2] window_us, ARGV[3] emission_interval_us,
--   ARGV[4] cost, ARGV[5] now_us ('' reads the server clock with TIME).
-- A single check always writes its state (`write`; see multi.lua for the
-- checks that decide before they write).
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local now = time_now(ARGV[5])
local write = true

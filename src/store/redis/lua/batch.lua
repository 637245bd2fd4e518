end

-- batch.lua: closes the algorithm's function and calls it once per check
-- (see src/store/redis/scripts.rs). The checks are decided one after the
-- other at one time `now`, each exactly as the single script would decide
-- it; a key checked twice sees its first check's write.
--   ARGV[1] keys per check (1, or 2 for sliding_window_log),
--   ARGV[2] now_us ('' reads the server clock with TIME),
--   then four per check: limit, window_us, emission_interval_us, cost.
--   KEYS: the keys of every check, check after check.
-- Reply: one flat array, the six numbers of the single script's reply for
-- each check, check after check (`reply` in batch_head.lua).
local per = tonumber(ARGV[1])
local now = time_now(ARGV[2])
local checks = math.floor(#KEYS / per)
local keys = {}
for i = 0, checks - 1 do
  for j = 1, per do
    keys[j] = KEYS[i * per + j]
  end
  local a = 2 + i * 4
  check(keys, tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]),
    tonumber(ARGV[a + 4]), now)
end
return replies

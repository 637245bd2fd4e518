-- batch_head.lua: opens the function that holds the algorithm in a batched
-- script (prelude.lua, this, the algorithm, batch.lua): one check, with its
-- keys and arguments as parameters instead of KEYS and ARGV.
local function check(KEYS, limit, window, interval, cost, now)
local write = true

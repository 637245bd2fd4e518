-- batch_head.lua: opens the function that holds the algorithm in a batched
-- script (prelude.lua, this, the algorithm, batch.lua): one check, with its
-- keys and arguments as parameters instead of KEYS and ARGV.
-- The checks' answers go into one flat array, six numbers per check (see
-- `reply` in prelude.lua): Redis turns one array of integers into its
-- reply more cheaply than an array of arrays.
local replies, answered = {}, 0
local function reply(allowed, limit, remaining, reset_after, retry_after, now)
  replies[answered + 1] = allowed
  replies[answered + 2] = limit
  replies[answered + 3] = remaining
  replies[answered + 4] = reset_after
  replies[answered + 5] = retry_after
  replies[answered + 6] = now
  answered = answered + 6
end
local function check(KEYS, limit, window, interval, cost, now)
local write = true

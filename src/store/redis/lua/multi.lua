-- multi.lua: checks with several limits, all or nothing, after prelude.lua
-- and the five algorithms as functions (see src/store/redis/scripts.rs).
-- It mirrors src/core/multi.rs (`check_all`): every limit is decided once,
-- its writes kept rather than done (`write` is a table, see `put` in
-- prelude.lua); only when every one allows, and the caller asked to
-- consume, are the kept writes done, limit after limit. No two limits of a
-- check share a key, so each limit's writes are exactly those it would
-- have done alone. multi_one.lua calls it for one check,
-- multi_batch.lua for several in a row.
--
-- One check's ARGV, from `a`: cost (>= 1); 1 to consume when every limit
-- allows, 0 never to consume (a peek, a shadow rule); the number of
-- limits; then five per limit: algorithm (1 token_bucket, 2 gcra,
-- 3 fixed_window, 4 sliding_window_counter, 5 sliding_window_log,
-- 6 concurrency), limit,
-- window_us, emission_interval_us, and the number of its keys. Its KEYS,
-- from `k`: each limit's keys, limit after limit (one per limit, two for
-- sliding_window_log); in a cluster all in one slot (a hash tag).
--
-- Replies one reply per limit, in order, each as the single script's:
-- {allowed, limit, remaining, reset_after_us, retry_after_us, now_us}.
-- When nothing was consumed, a limit that would have allowed answers
-- allowed with the numbers of its state as it stands (decided as a cost
-- above its limit, which never fits and never writes), retry 0.
local algorithms = {token_bucket, gcra, fixed_window, sliding_window_counter, sliding_window_log, concurrency}

-- Decides the check at ARGV[a] and KEYS[k] at `now`; returns its replies
-- and where the next check's ARGV and KEYS start.
local function check_limits(a, k, now)
  local cost = tonumber(ARGV[a])
  local consume = ARGV[a + 1] == '1'
  local count = tonumber(ARGV[a + 2])
  a = a + 3
  local limits = {}
  for i = 1, count do
    local n = tonumber(ARGV[a + 4])
    local keys = {}
    for j = 1, n do
      keys[j] = KEYS[k]
      k = k + 1
    end
    limits[i] = {
      decide = algorithms[tonumber(ARGV[a])],
      limit = tonumber(ARGV[a + 1]),
      window = tonumber(ARGV[a + 2]),
      interval = tonumber(ARGV[a + 3]),
      keys = keys,
    }
    a = a + 5
  end

  local replies = {}
  local writes = {}
  local all = true
  for i, l in ipairs(limits) do
    writes[i] = consume and {} or false
    replies[i] = l.decide(l.keys, l.limit, l.window, l.interval, cost, now, writes[i])
    if replies[i][1] ~= 1 then
      all = false
    end
  end
  if all and consume then
    for i = 1, #limits do
      for _, command in ipairs(writes[i]) do
        redis.call(unpack(command))
      end
    end
  else
    for i, l in ipairs(limits) do
      if replies[i][1] == 1 then
        local state = l.decide(l.keys, l.limit, l.window, l.interval, l.limit + 1, now, false)
        replies[i] = {1, state[2], state[3], state[4], 0, state[6]}
      end
    end
  end
  return replies, a, k
end

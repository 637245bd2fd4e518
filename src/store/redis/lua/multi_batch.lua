-- multi_batch.lua: several checks with several limits each, decided one
-- after the other at one time `now`, each exactly as multi_one.lua would
-- decide it alone (see multi.lua); a counter named by two checks sees the
-- first one's write.
--   ARGV[1] now_us: '' to read the server clock (TIME), else that integer;
--   then each check's ARGV, check after check; KEYS likewise.
-- Returns, per check in order, its replies (one per limit).
local now = time_now(ARGV[1])
local checks = {}
local a, k = 2, 1
while a <= #ARGV do
  local replies
  replies, a, k = check_limits(a, k, now)
  checks[#checks + 1] = replies
end
return checks

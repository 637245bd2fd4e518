-- multi_one.lua: one check with several limits (see multi.lua).
--   ARGV[1] now_us: '' to read the server clock (TIME), else that integer;
--   then the check's ARGV from ARGV[2], its KEYS from KEYS[1].
-- Returns one reply per limit, in order.
local replies = check_limits(2, 1, time_now(ARGV[1]))
return replies

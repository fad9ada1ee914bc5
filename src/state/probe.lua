-- At every (re)connection and every probe: the epoch, as admit.lua sees it.
-- KEYS: 1 epoch. ARGV: 1 known id, 2 a fresh id, 3 now (ms), 4 '1' unless
-- the store is persistent (a missing epoch then starts now), 5 '1' when
-- what the store accepted so far may be lost (another process answers, or
-- it may have evicted keys: src/state/guard.rs): since moves up to now.
-- Returns {epoch since, epoch id}.
--@EPOCH@
local id, since = epoch(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if ARGV[5] == '1' and since < tonumber(ARGV[3]) then
  since = tonumber(ARGV[3])
  redis.call('SET', KEYS[1], id .. ' ' .. ARGV[3])
end
return {since, id}

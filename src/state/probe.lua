-- At every (re)connection and every probe: the epoch, as admit.lua sees it.
-- KEYS: 1 epoch. ARGV: 1 known id, 2 a fresh id, 3 now (ms), 4 '1' unless
-- the store is persistent (a missing epoch then starts now).
-- Returns {epoch since, epoch id}.
--@EPOCH@
local id, since = epoch(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return {since, id}

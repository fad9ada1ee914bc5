-- An operator's unblock, for every replica: the identity's block and
-- throttle and, when the target is an address, the source's block are
-- deleted, and the time is kept so that replicas lift their own copies
-- imposed before it.
-- KEYS: 1 identity block, 2 identity throttle, 3 throttle TAT, 4 the
--       identity's last unblock, 5 source block, 6 the source's last
--       unblock, 7 the index of source blocks, 8 the index of source
--       unblocks, 9 the change sequence of both, 10 the change log, 11 its
--       floor (src/state/sources.rs)
-- ARGV: 1 now (ms), 2 how long the unblock time is kept (ms), 3 '1' when
--       the target is an address (KEYS 5 to 11 are then used), 4 the
--       source's label, 5 changes the log keeps, 6 the deadline (ms): by the
--       store's clock, after it nothing is done
-- Returns {identity restrictions deleted, source blocks deleted}, or
-- {-1, -1} when the deadline had passed (the gateway stopped waiting, or
-- is about to: an unblock it reports as not done must never happen).
--@SRCLOG@
local t = redis.call('TIME')
local store_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if store_ms > tonumber(ARGV[6]) then
  return {-1, -1}
end
local of_identity = redis.call('DEL', KEYS[1], KEYS[2])
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2])
local of_source = 0
if ARGV[3] == '1' then
  of_source = math.max(redis.call('DEL', KEYS[5]), redis.call('HDEL', KEYS[7], ARGV[4]))
  redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[2])
  redis.call('HSET', KEYS[8], ARGV[4], ARGV[1])
  source_changed(KEYS[9], KEYS[10], KEYS[11], ARGV[4], ARGV[5])
end
return {of_identity, of_source}

-- A source block into the index, logged (src/state/sources.rs).
-- KEYS: 1 the index of source blocks, 2 the change sequence, 3 the change
--       log, 4 its floor, 5 the tidy-up cursor
-- ARGV: 1 the source's label, 2 the block's text, 3 changes the log keeps,
--       4 the most sources the index holds, 5 now (ms), 6 the grace (ms)
-- Returns 1 when indexed, 0 when the index is full of blocks that have not
-- ended (the block then holds on the replica that imposed it, and in its
-- own key, but other replicas do not refuse the source before its
-- handshake).
--@SRCLOG@
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
    and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
  -- Full: remove blocks that ended longer than the grace ago, a bounded
  -- batch at a time.
  local cursor = redis.call('GET', KEYS[5]) or '0'
  local r = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', 256)
  redis.call('SET', KEYS[5], r[1])
  local f = r[2]
  for i = 1, #f, 2 do
    local u = string.match(f[i + 1], '^%S+ %-?%d+ (%d+)$')
    if u and tonumber(u) + tonumber(ARGV[6]) <= tonumber(ARGV[5]) then
      redis.call('HDEL', KEYS[1], f[i])
    end
  end
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
source_changed(KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[3])
return 1

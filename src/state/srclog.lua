-- The change log of the source index (src/state/sources.rs): every change
-- of a source's block or unblock takes the next sequence number; the log
-- keeps the last `kept` changes (source -> its latest number), and the
-- floor is the highest number it no longer holds (a replica that saw less
-- than the floor reads the whole index again).
local function source_changed(seq, log, floor, label, kept)
  local n = redis.call('INCR', seq)
  redis.call('ZADD', log, n, label)
  local over = redis.call('ZCARD', log) - tonumber(kept)
  if over > 0 then
    local gone = redis.call('ZRANGE', log, 0, over - 1, 'WITHSCORES')
    redis.call('ZREMRANGEBYRANK', log, 0, over - 1)
    redis.call('SET', floor, gone[#gone])
  end
end

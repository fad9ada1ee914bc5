-- Removes index entries a reader found ended, each only if it still holds
-- the value that reader read (another replica may have written a new
-- block for the same source meanwhile: that one stays).
-- KEYS: 1 the hash. ARGV: field, value, field, value, ...
-- Returns how many were removed.
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return removed

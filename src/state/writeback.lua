-- The write-back of the nonces a replica accepted on its own state while
-- the store was away (reconnect.rs), before it turns back to the store.
-- Each nonce is held as admit.lua would have held it, on the store's clock
-- (the one no gateway steps): until that clock passes its envelope's
-- timestamp by the hold, and at least the hold from now. A nonce the store
-- already holds keeps the longer of the two times. One stamped a hold or
-- more before the store's clock is not written: admit.lua refuses its
-- envelope anyway (code 6). Each identity's high-water rises to the newest
-- timestamp written, as admit.lua's does, but never past the store's clock
-- plus the hold (admit.lua refuses an envelope stamped beyond that; a
-- replica whose clock ran ahead must not lock its clients out).
--
-- KEYS: per nonce, 2i-1 the nonce and 2i its identity's high-water
-- ARGV: 1 the hold (ms), 2 how long a high-water outlives the identity's
--       last accepted envelope (ms), then 2+i the nonce's envelope
--       timestamp (ms)
-- Returns the number of nonces written.
local t = redis.call('TIME')
local store_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = tonumber(ARGV[1])
local written = 0
for i = 1, #KEYS / 2 do
  local ts = tonumber(ARGV[2 + i])
  if ts > store_ms - hold then
    local px = hold + math.max(ts - store_ms, 0)
    if redis.call('PTTL', KEYS[2 * i - 1]) < px then
      redis.call('SET', KEYS[2 * i - 1], '1', 'PX', string.format('%.0f', px))
    end
    written = written + 1
    if ts <= store_ms + hold then
      local high = tonumber(redis.call('GET', KEYS[2 * i]) or '')
      if not high or ts > high then
        redis.call('SET', KEYS[2 * i], ARGV[2 + i], 'PX', ARGV[2])
      else
        redis.call('PEXPIRE', KEYS[2 * i], ARGV[2])
      end
    end
  end
end
return written

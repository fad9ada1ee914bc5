-- sealgate's one round trip per request (src/state/mod.rs says why each
-- step is here). Atomic: Redis runs a script alone.
--
-- KEYS: 1 epoch, 2 nonce, 3 rate TAT, 4 identity block, 5 identity
--       throttle, 6 throttle TAT, 7 last operator unblock of the identity,
--       8 the identity's high-water (newest accepted envelope timestamp),
--       9 the newest store time seen (ms)
-- ARGV: 1 epoch id this replica knows ('' if none), 2 a fresh epoch id,
--       3 now (ms, the gateway's clock), 4 the envelope's timestamp (ms),
--       5 skew (ms), 6 nonce retention (ms), 7 rate T (us), 8 rate tau
--       (us), 9 throttle T (us), 10 throttle tau (us), 11 now in us for
--       the GCRA ('' : the store's TIME, the one clock all replicas share),
--       12 '1' unless the store is persistent (a missing epoch starts now),
--       13 how long the high-water outlives the identity's last accepted
--       envelope (ms)
-- Returns {code, epoch since, epoch id, last unblock (ms, 0: none), extra}
--   code 0 accepted (nonce recorded, one unit of the rate taken)
--        1 blocked (extra: the block, "<detector> <since> <until|->")
--        2 the envelope may predate what the store remembers (gap)
--        3 throttled (extra: us to wait)   4 over the rate (extra: us)
--        5 the nonce was already used
--        6 the envelope was signed a hold or more before the store's
--          clock or the newest one accepted from this identity (its nonce
--          may have expired), or more than a hold after the store's clock
--@EPOCH@
--@GCRA@
local id, since = epoch(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[12])
local unblocked = tonumber(redis.call('GET', KEYS[7]) or '0') or 0
local block = redis.call('GET', KEYS[4])
if block then return {1, since, id, unblocked, block} end
if tonumber(ARGV[4]) < since + tonumber(ARGV[5]) then
  return {2, since, id, unblocked, ''}
end
local now_us = clock_us(ARGV[11])
local throttled = redis.call('EXISTS', KEYS[5]) == 1
local thr_tat = 0
if throttled then
  local ok, v = gcra(KEYS[6], now_us, tonumber(ARGV[9]), tonumber(ARGV[10]), 1)
  if not ok then return {3, since, id, unblocked, string.format('%.0f', v)} end
  thr_tat = v
end
local ok, tat = gcra(KEYS[3], now_us, tonumber(ARGV[7]), tonumber(ARGV[8]), 1)
if not ok then return {4, since, id, unblocked, string.format('%.0f', tat)} end
-- The nonce is held for the hold (ARGV[6]) of the store's clock, which no
-- gateway steps: a gateway clock going back by up to that much finds it.
-- Two floors cover what expiry forgets, both refusing as a replay whose
-- nonce may have expired (6):
-- * the store's clock: an envelope stamped a hold or more before the
--   store's now. A nonce is held until the store's clock passes its
--   envelope's timestamp by the hold, so an envelope whose nonce expired
--   is below this floor, whatever the gateway's clock says (a gateway
--   stepped back more than the hold, an idle client, a lagging replica).
--   Likewise one stamped more than a hold ahead of the store's clock is
--   refused: its nonce would have to be held past any bound.
-- * the identity's high-water: nothing signed a hold or more before the
--   newest accepted envelope (an honest envelope lags it by at most twice
--   the skew on a steady clock).
local ts = tonumber(ARGV[4])
local hold = tonumber(ARGV[6])
local store_ms = math.floor(now_us / 1000)
-- The lower floor follows the newest store time seen (KEYS[9]), not the
-- store's clock alone: a store clock that ran ahead (a step, or a failover
-- to a replica ahead) expired nonces by that time, and stepping back must
-- not bring their envelopes back above the floor.
local seen = tonumber(redis.call('GET', KEYS[9]) or '') or 0
if store_ms > seen then
  seen = store_ms
  redis.call('SET', KEYS[9], string.format('%.0f', seen), 'PX', ARGV[13])
end
if ts <= seen - hold or ts > store_ms + hold then
  return {6, since, id, unblocked, ''}
end
local high = tonumber(redis.call('GET', KEYS[8]) or '')
if high and ts <= high - hold then return {6, since, id, unblocked, ''} end
-- Held until the store's clock reaches ts + hold (at least the hold).
local ahead = math.max(ts - store_ms, 0)
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', string.format('%.0f', hold + ahead)) then
  return {5, since, id, unblocked, ''}
end
if not high or ts > high then
  redis.call('SET', KEYS[8], ARGV[4], 'PX', ARGV[13])
else
  redis.call('PEXPIRE', KEYS[8], ARGV[13])
end
keep_tat(KEYS[3], tat, now_us)
if throttled then keep_tat(KEYS[6], thr_tat, now_us) end
return {0, since, id, unblocked, ''}

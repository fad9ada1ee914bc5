-- GCRA exactly as the governor crate (the in-process limiter) computes it,
-- in microseconds: T = 1 s / per_second, tau = T * (burst - 1); n cells
-- are allowed at t0 when t0 >= TAT + T * (n - 1) - tau, and then
-- TAT = max(TAT, t0) + T * n. A missing TAT is t0.
-- How long a TAT outlives its time, in ms. A TAT in the past counts as
-- now, so this changes nothing but when the store forgets it; a fixed
-- clock (tests) runs apart from the store's expiry clock, so there the TAT
-- is kept a minute longer.
local slack_ms = 1
local function clock_us(given)
  if given ~= '' then
    slack_ms = 60000
    return tonumber(given)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- Returns true and the new TAT, or false and the microseconds to wait.
local function gcra(key, now_us, t, tau, n)
  local tat = tonumber(redis.call('GET', key) or '') or now_us
  local earliest = tat + t * (n - 1) - tau
  if now_us < earliest then return false, earliest - now_us end
  return true, math.max(tat, now_us) + t * n
end
-- Keeps the TAT until it is in the past (then a missing key means the same).
local function keep_tat(key, tat, now_us)
  local ms = math.max(1, math.ceil((tat - now_us) / 1000) + slack_ms)
  redis.call('SET', key, string.format('%.0f', tat), 'PX', ms)
end

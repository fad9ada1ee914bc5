-- The rest of a dearer tool's cost, once its name is known (stage 5).
-- KEYS: 1 rate TAT. ARGV: 1 T (us), 2 tau (us), 3 cells, 4 now in us ('' : TIME)
-- Returns {0, 0} taken, {4, us to wait} over the rate, {6, 0} more than the burst.
--@GCRA@
local n = tonumber(ARGV[3])
if tonumber(ARGV[1]) * (n - 1) > tonumber(ARGV[2]) then return {6, 0} end
local now_us = clock_us(ARGV[4])
local ok, v = gcra(KEYS[1], now_us, tonumber(ARGV[1]), tonumber(ARGV[2]), n)
if not ok then return {4, string.format('%.0f', v)} end
keep_tat(KEYS[1], v, now_us)
return {0, 0}

-- The store's epoch: "<id> <since_ms>". It is created by the first replica
-- that finds it missing: with since 0 (the store remembers everything that
-- was ever accepted) only when that replica knew no epoch before and the
-- operator said the store is persistent (cold = '0'), else with since = now
-- (the store may have been emptied while no replica ran: what was accepted
-- before is forgotten). A replica that finds another id than the
-- one it knew (the store was emptied and re-created meanwhile) moves since
-- up to now. Envelopes stamped before since + skew are refused (code 2).
local function epoch(key, known, fresh, now_ms, cold)
  local v = redis.call('GET', key)
  if not v then
    local since = '0'
    if known ~= '' or cold ~= '0' then since = now_ms end
    redis.call('SET', key, fresh .. ' ' .. since)
    return fresh, tonumber(since)
  end
  local id, since = string.match(v, '^(%S+) (%d+)$')
  if not id then
    redis.call('SET', key, fresh .. ' ' .. now_ms)
    return fresh, tonumber(now_ms)
  end
  if known ~= '' and id ~= known and tonumber(since) < tonumber(now_ms) then
    since = now_ms
    redis.call('SET', key, id .. ' ' .. since)
  end
  return id, tonumber(since)
end

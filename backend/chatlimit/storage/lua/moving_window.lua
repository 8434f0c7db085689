-- Moving window: each key is a list of hit timestamps (ms, newest first), never longer than
-- its amount. One entry per unit of cost, so it has no weighted entries for token budgets
-- (settings refuses TOKEN_LIMIT with it). Time comes from Redis itself, so replicas with
-- skewed clocks still agree.
local clock = true

local function step(key, amount, window, cost, reading, now)
  local cutoff = now - window
  while true do
    local oldest = redis.call('LINDEX', key, -1)
    if not oldest or tonumber(oldest) > cutoff then break end
    redis.call('RPOP', key)
  end
  local count = redis.call('LLEN', key)
  local allowed = count + cost <= amount
  if allowed and not reading then
    for _ = 1, cost do redis.call('LPUSH', key, string.format('%.0f', now)) end
    redis.call('PEXPIRE', key, window)
    count = count + cost
  end
  local remaining = amount - count
  if remaining < 0 then remaining = 0 end
  local reset = 0
  if count > 0 then
    -- When refused: the moment enough old hits age out to make room for this cost.
    local index = -1
    if not allowed then index = -(count - amount + cost) end
    local ts = redis.call('LINDEX', key, index) or redis.call('LINDEX', key, 0)
    reset = tonumber(ts) + window - now
    if reset < 1 then reset = 1 end
  end
  return remaining, reset, 0, allowed
end

local function settle(key, window, since, delta, now)
  error('moving-window has no weighted entries to settle')
end

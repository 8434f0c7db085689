-- Sliding window counter for every limit of one request, in one round trip.
-- Each key is a hash {s = window start (ms), c = count in it, p = count in the window before};
-- the weighted count is p * (share of the previous window still inside) + c.
-- KEYS and ARGV as in fixed_window.lua. Time comes from Redis itself.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local peek = ARGV[1] == '1'
local out = {0}
for i, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[3 * i - 1])
  local window = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  -- After a refusal the later limits are only read: a refused request uses up nothing more.
  local reading = peek or out[1] > 0
  -- Windows start at a client's first hit, as in limits, not on clock boundaries.
  local state = redis.call('HMGET', key, 's', 'c', 'p')
  local start, c, p = tonumber(state[1]), tonumber(state[2]) or 0, tonumber(state[3]) or 0
  if start == nil or now >= start + 2 * window then
    start, c, p = now, 0, 0
  elseif now >= start + window then
    start, c, p = start + window, 0, c
  end
  local elapsed = now - start
  local weighted = math.floor(p * (window - elapsed) / window) + c
  local allowed = weighted + cost <= amount
  if allowed and not reading then
    c = c + cost
    weighted = weighted + cost
    redis.call('HSET', key, 's', string.format('%.0f', start), 'c', c, 'p', p)
    redis.call('PEXPIRE', key, 2 * window - elapsed)
  end
  local remaining = amount - weighted
  if remaining < 0 then remaining = 0 end
  local reset = 0
  if allowed then
    if weighted > 0 then reset = window - elapsed end
  else
    -- When refused: how long until the weighted count leaves room for this cost.
    local budget = amount - cost - c
    if budget >= 0 then
      reset = window - elapsed - math.floor((budget + 1) * window / p)
    else
      reset = window - elapsed
      local next_budget = amount - cost
      if c > 0 then
        local wait = window - math.floor((next_budget + 1) * window / c)
        if wait > 0 then reset = reset + wait end
      end
    end
    if reset < 1 then reset = 1 end
  end
  out[#out + 1] = remaining
  out[#out + 1] = reset
  if not allowed and not reading then out[1] = i end
end
return out

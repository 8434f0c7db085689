-- Moving window for every limit of one request, in one round trip.
-- Each key is a list of hit timestamps (ms, newest first), never longer than its amount.
-- KEYS and ARGV as in fixed_window.lua. Time comes from Redis itself, so replicas with
-- skewed clocks still agree.
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
  out[#out + 1] = remaining
  out[#out + 1] = reset
  if not allowed and not reading then out[1] = i end
end
return out

-- Fixed window: each key is a counter that expires with its window, which starts with the
-- window's first hit. A cost is charged only when it fits, so a reservation of 300 tokens
-- refused with 200 left leaves those 200 usable. Check and INCRBY run atomically here, unlike
-- the guide's GET-then-INCR, so concurrent replicas can never both read "2" and both allow
-- the 3rd request. A window is named by its expiry (PEXPIRETIME): a settlement can then tell
-- whether the window it reserved in is still the current one.
local clock = false

-- remaining, reset (ms), window, allowed
local function step(key, amount, window, cost, reading, now)
  local count = tonumber(redis.call('GET', key) or '0')
  local allowed = count + cost <= amount
  local ttl
  if allowed and not reading then
    count = redis.call('INCRBY', key, cost)
    ttl = redis.call('PTTL', key)
    -- The window starts with its first hit; a key left without a TTL heals here too.
    if ttl < 0 then
      redis.call('PEXPIRE', key, window)
      ttl = window
    end
  else
    ttl = redis.call('PTTL', key)
    if ttl < 0 then ttl = 0 end
  end
  local remaining = amount - count
  if remaining < 0 then remaining = 0 end
  local since = 0
  if allowed and not reading then since = redis.call('PEXPIRETIME', key) end
  return remaining, ttl, since, allowed
end

local function settle(key, window, since, delta, now)
  if redis.call('PEXPIRETIME', key) == since then
    if redis.call('INCRBY', key, delta) < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
  end
end

-- Fixed window: each key is a counter that expires with its window, which starts with the
-- window's first hit. A cost is charged only when it fits, so a reservation of 300 tokens
-- refused with 200 left leaves those 200 usable. Check and INCRBY run atomically here, unlike
-- the guide's GET-then-INCR, so concurrent replicas can never both read "2" and both allow
-- the 3rd request. A window is named by its expiry (PEXPIRETIME): a settlement can then tell
-- whether the window it reserved in is still the current one.
-- Redis time (once per call): a charge's reset is its window's end (PEXPIRETIME, which it
-- reads anyway to name the window) less now, instead of one more PTTL per limit.
local clock = true

-- remaining, reset (ms), window, allowed
local function step(key, amount, window, cost, reading, now)
  local count = tonumber(redis.call('GET', key) or '0')
  local allowed = count + cost <= amount
  local ttl, since = 0, 0
  if allowed and not reading then
    count = redis.call('INCRBY', key, cost)
    since = redis.call('PEXPIRETIME', key)
    if since < 0 then
      -- The window starts with its first hit; a key left without a TTL heals here too.
      redis.call('PEXPIRE', key, window)
      since = redis.call('PEXPIRETIME', key)
      ttl = window
    else
      ttl = since - now
    end
  else
    ttl = redis.call('PTTL', key)
  end
  if ttl < 0 then ttl = 0 end
  local remaining = amount - count
  if remaining < 0 then remaining = 0 end
  return remaining, ttl, since, allowed
end

local function settle(key, window, since, delta, now)
  if redis.call('PEXPIRETIME', key) == since then
    if redis.call('INCRBY', key, delta) < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
  end
end

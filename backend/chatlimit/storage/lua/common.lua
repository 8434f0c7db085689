-- Prepended to every script: Redis time and the stream leases.
--
-- A stream lease is a member of the user's sorted set, scored by when it expires (Redis time,
-- ms, so replicas with skewed clocks agree). Its holder renews it while the reply streams and
-- removes it when the reply ends; expired members are dropped at every admission, so the
-- slots of a replica killed mid-stream come back within the TTL, never "until a Redis restart"
-- (LiteLLM #20256), and no decrement can be lost to a cancelled task (LiteLLM #27955): a
-- lease is removed by name, never counted down.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Free slots and ms until the first live lease expires; admission prunes, a peek only reads.
local function lease_state(key, limit, now, peek)
  local count
  if peek then
    count = redis.call('ZCOUNT', key, '(' .. now, '+inf')
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    count = redis.call('ZCARD', key)
  end
  local reset = 0
  if count > 0 then  -- an empty set has no first lease to wait for: one command saved
    local first = redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if first[2] then reset = tonumber(first[2]) - now end
  end
  local free = limit - count
  if free < 0 then free = 0 end
  return free, reset
end

-- Every member scores at most now + ttl, so the set itself may expire with the newest.
local function lease_take(key, id, now, ttl)
  redis.call('ZADD', key, now + ttl, id)
  redis.call('PEXPIRE', key, ttl)
end

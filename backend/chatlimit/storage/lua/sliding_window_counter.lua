-- Sliding window counter: each key is a hash {s = window start (ms), c = count in it,
-- p = count in the window before}; the weighted count is p * (share of the previous window
-- still inside) + c. Windows start at a client's first hit, as in limits' Redis storage, not
-- on clock boundaries, and keep that phase while every window sees a call; a window is named
-- by its start. Time comes from Redis itself.
local clock = true

local function step(key, amount, window, cost, reading, now)
  local state = redis.call('HMGET', key, 's', 'c', 'p')
  local start, c, p = tonumber(state[1]), tonumber(state[2]) or 0, tonumber(state[3]) or 0
  if start == nil or now >= start + 2 * window then
    start, c, p = now, 0, 0
  elseif now >= start + window then
    start, c, p = start + window, 0, c
    -- The window moves on every call, peeks and refused hits included (as in limits): the
    -- next window then keeps this phase instead of starting anew.
    redis.call('HSET', key, 's', string.format('%.0f', start), 'c', 0, 'p', p)
    redis.call('PEXPIRE', key, 2 * window - (now - start))
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
    if weighted > 0 then
      -- Until the weighted count next drops: the previous window's share loses a request,
      -- or, when it has none left to lose, the current window ends.
      reset = window - elapsed
      local share = math.floor(p * (window - elapsed) / window)
      if share > 0 then
        reset = reset - math.floor(share * window / p)
        if reset < 1 then reset = 1 end
      end
    end
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
  return remaining, reset, start, allowed
end

local function settle(key, window, since, delta, now)
  local state = redis.call('HMGET', key, 's', 'c')
  local start, c = tonumber(state[1]), tonumber(state[2]) or 0
  if start == since and now < start + window then
    c = c + delta
    if c < 0 then c = 0 end
    redis.call('HSET', key, 'c', c)
  end
end

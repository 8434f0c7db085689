-- Settlement, when a reply ends: each weighted limit is charged what was used instead of what
-- was reserved, and the lease is removed, in one atomic call (appended like admit.lua).
-- ARGV: lease (1 = remove one), lease id, then amount, window (ms), the window the
-- reservation went into (admit.lua's answer) and delta (used - reserved) per limit. KEYS: the
-- lease set first when there is one, then one key per limit.
-- The delta lands only in the window the reservation was made in: once that window is over,
-- a refund would be budget the new window never had, so the rest stays charged and ages out.
-- Returns {remaining, reset (ms)} per limit, as a peek after the settlement sees it.
local leasing = ARGV[1] == '1'
local offset = leasing and 1 or 0
local n = (#ARGV - 2) / 4
local now = now_ms()
if leasing then redis.call('ZREM', KEYS[1], ARGV[2]) end
local out = {}
for i = 1, n do
  local key = KEYS[i + offset]
  local amount = tonumber(ARGV[4 * i - 1])
  local window = tonumber(ARGV[4 * i])
  local delta = tonumber(ARGV[4 * i + 2])
  if delta ~= 0 then settle(key, window, tonumber(ARGV[4 * i + 1]), delta, now) end
  local remaining, reset = step(key, amount, window, 1, true, now)
  out[#out + 1] = remaining
  out[#out + 1] = reset
end
return out

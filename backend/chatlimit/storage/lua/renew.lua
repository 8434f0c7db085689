-- The heartbeat of a streaming reply: push its lease's expiry one TTL ahead (appended to
-- common.lua). KEYS: the lease set. ARGV: lease id, TTL (ms). Returns 1, or 0 when the lease
-- had already expired (then it is not brought back: its slot may be someone else's now).
local now = now_ms()
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > now then
  lease_take(KEYS[1], ARGV[1], now, tonumber(ARGV[2]))
  return 1
end
return 0

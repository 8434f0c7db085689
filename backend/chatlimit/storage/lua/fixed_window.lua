-- Fixed window for every limit of one request, in one round trip.
-- KEYS: one counter per limit. ARGV: peek (1 = read only), then amount, window (ms) and cost
-- per limit (each limit is charged its own cost, as in slowapi).
-- Returns {failed limit index or 0, remaining_1, reset_ms_1, remaining_2, reset_ms_2, ...},
-- every limit answered: those after a refusing one are read, not charged.
-- INCRBY and PEXPIRE run atomically here, unlike the guide's GET-then-INCR, so concurrent
-- replicas can never both read "2" and both allow the 3rd request.
local peek = ARGV[1] == '1'
local out = {0}
for i, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[3 * i - 1])
  local window = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  -- After a refusal the later limits are only read: a refused request uses up nothing more.
  local reading = peek or out[1] > 0
  local count, ttl
  if reading then
    count = tonumber(redis.call('GET', key) or '0')
    ttl = redis.call('PTTL', key)
    if ttl < 0 then ttl = 0 end
  else
    count = redis.call('INCRBY', key, cost)
    ttl = redis.call('PTTL', key)
    -- The window starts with its first hit; a key left without a TTL heals here too.
    if ttl < 0 then
      redis.call('PEXPIRE', key, window)
      ttl = window
    end
  end
  local remaining = amount - count
  if remaining < 0 then remaining = 0 end
  out[#out + 1] = remaining
  out[#out + 1] = ttl
  if not reading and count > amount then out[1] = i end
end
return out

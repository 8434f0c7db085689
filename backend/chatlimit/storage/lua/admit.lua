-- Admission: the strategy's step for every limit of one request, and the stream lease, in
-- one atomic call (appended to common.lua and the strategy's file).
-- ARGV: peek (1 = read only), lease limit (0 = no lease), lease id, lease TTL (ms), then
-- amount, window (ms) and cost per limit. KEYS: the user's lease set first when a lease is
-- asked for, then one key per limit, all in the user's hash slot ({address}).
-- Returns {refused or 0, free slots, ms until a slot frees, then remaining, reset (ms) and
-- window (what settle.lua needs to find it again) per limit}; refused is the index of the
-- limit that refused, or the number of limits + 1 when no slot is free.
-- The lease is looked at first and taken last: a request refused for want of a slot uses up
-- nothing, and a slot is never held by a request a limit refused. After a refusal the later
-- limits are only read, so a refused request uses up nothing more; every limit is answered,
-- so the caller still knows each one that would refuse the next request.
local peek = ARGV[1] == '1'
local lease_limit = tonumber(ARGV[2])
local leasing = lease_limit > 0
local offset = leasing and 1 or 0
local n = (#ARGV - 4) / 3
local now = 0
if clock or leasing then now = now_ms() end
local out = {0, 0, 0}
if leasing then
  local free, reset = lease_state(KEYS[1], lease_limit, now, peek)
  out[2], out[3] = free, reset
  if free < 1 and not peek then out[1] = n + 1 end
end
for i = 1, n do
  local amount = tonumber(ARGV[3 * i + 2])
  local window = tonumber(ARGV[3 * i + 3])
  local cost = tonumber(ARGV[3 * i + 4])
  local reading = peek or out[1] > 0
  local remaining, reset, since, allowed = step(KEYS[i + offset], amount, window, cost, reading, now)
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = since
  if not allowed and not reading then out[1] = i end
end
if leasing and not peek and out[1] == 0 then
  lease_take(KEYS[1], ARGV[3], now, tonumber(ARGV[4]))
  out[2] = out[2] - 1
end
return out

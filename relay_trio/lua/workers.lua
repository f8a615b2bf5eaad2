-- workers: the live workers (seen within the TTL), each one's info JSON and when
-- it was last seen. The info keys are built from KEYS[1]'s prefix (one slot).
-- KEYS[1] the registry's last-seen zset   ARGV[1] info key prefix   ARGV[2] TTL (ms)
-- Returns a flat list: id, last seen (ms), info JSON, ... (a worker whose info
-- key expired is left out).
expect(KEYS[1], 'zset')
local now = now_ms()
local seen = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[2]), '+inf', 'WITHSCORES')
local out = {}
for i = 1, #seen, 2 do
  local info = redis.pcall('GET', ARGV[1] .. seen[i])
  if type(info) == 'string' then
    out[#out + 1] = seen[i]
    out[#out + 1] = seen[i + 1]
    out[#out + 1] = info
  end
end
return out

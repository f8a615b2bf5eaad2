-- workers: the live workers (their info key has not expired), each one's info
-- JSON and when it was last seen; ids whose info key is gone (a worker killed
-- without a word, once its TTL passed) are dropped from the zset on the way.
-- The info keys are built from ARGV[1], KEYS[1]'s own prefix (one slot).
-- KEYS[1] the registry's last-seen zset   ARGV[1] info key prefix
-- Returns a flat list: id, last seen (ms), info JSON, ...
expect(KEYS[1], 'zset')
local seen = redis.call('ZRANGE', KEYS[1], 0, 9999, 'WITHSCORES')
local out, gone = {}, {}
for i = 1, #seen, 2 do
  local info = redis.pcall('GET', ARGV[1] .. seen[i])
  if type(info) == 'string' then
    out[#out + 1] = seen[i]
    out[#out + 1] = seen[i + 1]
    out[#out + 1] = info
  else
    gone[#gone + 1] = seen[i]
  end
end
in_chunks(gone, function(...) redis.call('ZREM', KEYS[1], ...) end)
return out

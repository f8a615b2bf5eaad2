-- workers: the live workers (their info key has not expired), each one's info
-- JSON and when it was last seen; ids whose info key is gone (a worker killed
-- without a word, once its TTL passed) are dropped from the zset on the way.
-- The info keys ("P:{workers}:info:<id>") are built from KEYS[1]'s own
-- {workers}-tagged base, so they share its Cluster slot.
-- KEYS[1] the registry's last-seen zset ("P:{workers}:seen")
-- Returns a flat list: id, last seen (ms), info JSON, ...
expect(KEYS[1], 'zset')
local info_base = key_base(KEYS[1]) .. 'info:'
local seen = redis.call('ZRANGE', KEYS[1], 0, 9999, 'WITHSCORES')
local out, gone = {}, {}
for i = 1, #seen, 2 do
  local info = redis.pcall('GET', info_base .. seen[i])
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

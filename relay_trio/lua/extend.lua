-- extend (heartbeat): push visibility deadlines forward for jobs still in flight
-- under the given lease; never re-adds a finished job.
-- KEYS[1] inflight zset
-- ARGV[1] visibility (ms)   ARGV[2..] pairs: id, lease
-- Returns one entry per pair: the new deadline (ms), or 0 when the lease is stale.
-- Every pair is read before the first write.
expect(KEYS[1], 'zset')
local base = key_base(KEYS[1])
local now = now_ms()
local deadline = now + tonumber(ARGV[1])
local out, live = {}, {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local cur = redis.call('HMGET', base .. 'job:' .. id, 'state', 'lease')
  local ok = cur[1] == 'inflight' and cur[2] == ARGV[i + 1] and redis.call('ZSCORE', KEYS[1], id)
  out[#out + 1] = ok and deadline or 0
  if ok then live[#live + 1] = id end
end
for _, id in ipairs(live) do
  redis.call('ZADD', KEYS[1], 'XX', deadline, id)
  redis.call('HSET', base .. 'job:' .. id, 'deadline', deadline)
end
return out

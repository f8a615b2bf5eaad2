-- extend (heartbeat): push visibility deadlines forward for jobs still in flight
-- under the given lease; never re-adds a finished job.
-- KEYS[1] inflight zset
-- ARGV[1] queue key base   ARGV[2] visibility (ms)   ARGV[3..] pairs: id, lease
-- Returns one entry per pair: the new deadline (ms), or 0 when the lease is stale.
local base = ARGV[1]
local now = now_ms()
local deadline = now + tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local jk = base .. 'job:' .. id
  local cur = redis.call('HMGET', jk, 'state', 'lease')
  if cur[1] == 'inflight' and cur[2] == ARGV[i + 1] and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], 'XX', deadline, id)
    redis.call('HSET', jk, 'deadline', deadline)
    out[#out + 1] = deadline
  else
    out[#out + 1] = 0
  end
end
return out

-- reap: in-flight jobs whose visibility deadline passed go back to ready with
-- their priority (attempts unchanged), or to the DLQ when their attempts are spent.
-- KEYS[1] inflight zset   KEYS[2] ready zset   KEYS[3] dlq list   KEYS[4] dead counter
-- KEYS[5] wake list
-- ARGV[1] queue key base   ARGV[2] at most this many jobs per call
-- Returns {requeued, dead_lettered}.
local base = ARGV[1]
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local requeued, dead = 0, 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local jk = base .. 'job:' .. id
  local j = redis.call('HMGET', jk, 'attempts', 'max_retries', 'priority', 'seq')
  if j[1] then
    local attempts = tonumber(j[1])
    local err = 'visibility timeout expired on attempt ' .. attempts
    if attempts >= tonumber(j[2]) then
      redis.call('HSET', jk, 'state', 'dead', 'lease', '', 'last_error', err, 'dead_at', now)
      redis.call('HDEL', jk, 'deadline')
      redis.call('RPUSH', KEYS[3], id)
      redis.call('INCR', KEYS[4])
      dead = dead + 1
    else
      redis.call('HSET', jk, 'state', 'ready', 'lease', '', 'last_error', err)
      redis.call('HDEL', jk, 'deadline')
      redis.call('ZADD', KEYS[2], ready_score(j[3], j[4]), id)
      requeued = requeued + 1
    end
  end
end
hint(KEYS[5], requeued)
return {requeued, dead}

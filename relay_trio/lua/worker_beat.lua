-- worker_beat: a worker process says it is alive (and what it runs), or leaves.
-- KEYS[1] the registry's last-seen zset (worker id -> ms)
-- KEYS[2] the worker's info key (JSON; expires with the worker: its TTL is the
--   truth about whether the worker is alive)
-- ARGV[1] worker id   ARGV[2] info JSON ('' = the worker leaves)   ARGV[3] TTL (ms)
-- ARGV[4] the longest TTL any worker may use (ms): entries older than that are
--   dropped from the zset on the way (each worker has its own TTL).
-- Returns the Redis time (ms).
expect(KEYS[1], 'zset')
expect(KEYS[2], 'string')
local now = now_ms()
if ARGV[2] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
else
  redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]))
  redis.call('ZADD', KEYS[1], now, ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[4]))
return now

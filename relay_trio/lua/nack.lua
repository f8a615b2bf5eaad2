-- nack: a failed attempt. Retry after a full-jitter backoff, or dead-letter.
-- KEYS[1] inflight zset   KEYS[2] delayed zset   KEYS[3] dlq list   KEYS[4] dead counter
-- KEYS[5] dlq-trimmed counter
-- ARGV[1] id   ARGV[2] lease   ARGV[3] error text
-- ARGV[4] backoff base (ms)   ARGV[5] backoff cap (ms)   ARGV[6] jitter fraction in [0, 1)
-- ARGV[7] "1" to dead-letter at once whatever the attempts
-- ARGV[8] DLQ cap (jobs)   ARGV[9] DLQ TTL (ms)
-- Backoff: ceiling = min(cap, base * 2^(attempts-1)); delay = floor(jitter * ceiling).
-- Dead-lettering trims the DLQ to its cap and TTL, oldest first, and wakes the
-- job's waiters (watch.lua).
-- Returns {code, delay_ms, trimmed}: 1 = retry (delayed), 2 = dead-lettered,
--   0 = stale lease (nothing changed).
expect(KEYS[1], 'zset')
expect(KEYS[2], 'zset')
expect(KEYS[3], 'list')
expect_counter(KEYS[4])
expect_counter(KEYS[5])
local base = key_base(KEYS[1])
local id, lease, err = ARGV[1], ARGV[2], ARGV[3]
local jk = base .. 'job:' .. id
local cur = redis.call('HMGET', jk, 'state', 'lease', 'attempts', 'max_retries', 'waiters')
if cur[1] ~= 'inflight' or cur[2] ~= lease then return {0, 0, 0} end
local now = now_ms()
local attempts, maxr = tonumber(cur[3]) or 0, tonumber(cur[4]) or 0
redis.call('ZREM', KEYS[1], id)
if attempts >= maxr or ARGV[7] == '1' then
  redis.call('HSET', jk, 'state', 'dead', 'lease', '', 'last_error', err, 'dead_at', now)
  redis.call('HDEL', jk, 'deadline')
  redis.call('RPUSH', KEYS[3], id)
  redis.call('INCR', KEYS[4])
  notify_end(base, id, cur[5])
  local trimmed = trim_dlq(base, KEYS[3], KEYS[5], tonumber(ARGV[8]), now - tonumber(ARGV[9]))
  return {2, 0, trimmed}
end
local ceiling = math.min(tonumber(ARGV[5]), tonumber(ARGV[4]) * 2 ^ (attempts - 1))
local delay = math.floor(tonumber(ARGV[6]) * ceiling)
local due = now + delay
redis.call('HSET', jk, 'state', 'delayed', 'lease', '', 'last_error', err, 'ready_at', due)
redis.call('HDEL', jk, 'deadline')
redis.call('ZADD', KEYS[2], due, id)
return {1, delay, 0}

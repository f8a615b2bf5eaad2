-- abort: the worker running an aborted job ends it 'cancelled' (never retried),
-- if it is still in flight under the worker's lease.
-- KEYS[1] inflight zset   KEYS[2] aborting zset   KEYS[3] cancelled zset
-- ARGV[1] how long a cancelled job is kept (ms)
-- ARGV[2] id   ARGV[3] lease
-- Returns 1 = cancelled, 0 = stale (the job ended or was claimed again).
expect(KEYS[1], 'zset')
expect(KEYS[2], 'zset')
expect(KEYS[3], 'zset')
local base = key_base(KEYS[1])
local id, lease = ARGV[2], ARGV[3]
local cur = redis.call('HMGET', base .. 'job:' .. id, 'state', 'lease', 'waiters')
redis.call('ZREM', KEYS[2], id)
if cur[1] ~= 'inflight' or cur[2] ~= lease then return 0 end
redis.call('ZREM', KEYS[1], id)
end_cancelled(base, id, KEYS[3], tonumber(ARGV[1]), now_ms(), cur[3])
return 1

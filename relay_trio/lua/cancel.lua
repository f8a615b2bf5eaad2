-- cancel: a ready or delayed job ends 'cancelled' at once; for a job in flight
-- an abort is requested (the worker running it sees it in the aborting set and
-- ends it through abort.lua; the reaper does, if that worker is gone).
-- KEYS[1] ready zset   KEYS[2] delayed zset   KEYS[3] inflight zset
-- KEYS[4] aborting zset (score: when the abort was requested)   KEYS[5] cancelled zset
-- ARGV[1] id   ARGV[2] how long a cancelled job is kept (ms)
-- Returns {code, state}: 1 = cancelled; 2 = abort requested (state 'inflight');
--   0 = the job has ended already (its state); -1 = no such job.
expect(KEYS[1], 'zset')
expect(KEYS[2], 'zset')
expect(KEYS[3], 'zset')
expect(KEYS[4], 'zset')
expect(KEYS[5], 'zset')
local base = key_base(KEYS[1])
local id = ARGV[1]
local jk = base .. 'job:' .. id
expect(jk, 'hash')
local cur = redis.call('HMGET', jk, 'state', 'waiters')
local state = cur[1]
if not state then return {-1, ''} end
local now = now_ms()
if state == 'ready' or state == 'delayed' then
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  end_cancelled(base, id, KEYS[5], tonumber(ARGV[2]), now, cur[2])
  return {1, 'cancelled'}
end
if state == 'inflight' then
  redis.call('HSET', jk, 'cancel_requested', '1')
  redis.call('ZADD', KEYS[4], now, id)
  return {2, 'inflight'}
end
return {0, state}

-- watch: how a wait for a job's end begins (no polling: the script that ends
-- the job pushes one token per waiter to its end-notification list).
-- KEYS[1] the job hash
-- Returns 0 = no such job; the whole hash (HGETALL) if the job has ended (done,
-- dead or cancelled); else 1, and the job counts one more waiter.
local st = expect(KEYS[1], 'hash')
if st == 'none' then return 0 end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'done' or state == 'dead' or state == 'cancelled' then
  return redis.call('HGETALL', KEYS[1])
end
redis.call('HINCRBY', KEYS[1], 'waiters', 1)
return 1

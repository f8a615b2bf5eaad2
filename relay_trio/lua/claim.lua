-- claim: take up to N ready jobs, best first, under a fresh lease.
-- KEYS[1] ready zset   KEYS[2] inflight zset   KEYS[3] ratelimit hash   KEYS[4] paused flag
-- ARGV[1] queue key base   ARGV[2] N (max jobs)   ARGV[3] visibility (ms)   ARGV[4] lease token
-- Returns {code, wait_ms, job, job, ...}; each job is the list of its values of
--   relay_trio.job.FIELDS, in that order (the HMGET below; false = unset), as
--   they stand after the claim (attempts, state, lease and deadline updated).
--   code 1 = claimed (maybe none: the queue is empty), 2 = paused,
--   3 = rate limited (wait_ms: when a token will be there).
-- Rate limit: token bucket {rate/s, burst} refilled from the server clock; a
-- token is consumed only for a job actually popped.
if redis.call('EXISTS', KEYS[4]) == 1 then return {2, 0} end
local base, want, vis, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local now = now_ms()
local rl = redis.call('HMGET', KEYS[3], 'rate', 'burst', 'tokens', 'ts')
local rate, burst, tokens = tonumber(rl[1]), tonumber(rl[2]), nil
if rate and burst then
  tokens = tonumber(rl[3]) or burst
  local ts = tonumber(rl[4]) or now
  if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end
  if tokens < 1 then
    redis.call('HSET', KEYS[3], 'tokens', tostring(tokens), 'ts', now)
    return {3, math.ceil((1 - tokens) * 1000 / rate)}
  end
  want = math.min(want, math.floor(tokens))
end
local popped = redis.call('ZPOPMIN', KEYS[1], want)
local out = {1, 0}
local deadline = now + vis
local leased = {}
for i = 1, #popped, 2 do
  local id = popped[i]
  local jk = base .. 'job:' .. id
  local f = redis.call('HMGET', jk, 'id', 'queue', 'payload', 'state', 'attempts',
    'max_retries', 'priority', 'created_at', 'idempotency_key', 'lease', 'last_error',
    'ready_at', 'deadline', 'dead_at')
  if f[1] or redis.call('EXISTS', jk) == 1 then
    f[4], f[5], f[10], f[13] = 'inflight', (tonumber(f[5]) or 0) + 1, lease, deadline
    redis.call('HSET', jk, 'attempts', f[5], 'state', 'inflight', 'lease', lease,
      'deadline', deadline)
    leased[#leased + 1] = deadline
    leased[#leased + 1] = id
    out[#out + 1] = f
  end
end
in_chunks(leased, function(...) redis.call('ZADD', KEYS[2], ...) end)
if tokens then
  redis.call('HSET', KEYS[3], 'tokens', tostring(tokens - (#out - 2)), 'ts', now)
end
return out

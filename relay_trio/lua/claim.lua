-- claim: take up to N ready jobs, best first, under a fresh lease.
-- KEYS[1] ready zset   KEYS[2] inflight zset   KEYS[3] ratelimit hash   KEYS[4] paused flag
-- ARGV[1] queue key base   ARGV[2] N (max jobs)   ARGV[3] visibility (ms)   ARGV[4] lease token
-- Returns {code, wait_ms, job, job, ...}; each job is a flat HGETALL list.
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
for i = 1, #popped, 2 do
  local id = popped[i]
  local jk = base .. 'job:' .. id
  if redis.call('EXISTS', jk) == 1 then
    redis.call('HINCRBY', jk, 'attempts', 1)
    redis.call('HSET', jk, 'state', 'inflight', 'lease', lease, 'deadline', deadline)
    redis.call('ZADD', KEYS[2], deadline, id)
    out[#out + 1] = redis.call('HGETALL', jk)
  end
end
if tokens then
  redis.call('HSET', KEYS[3], 'tokens', tostring(tokens - (#out - 2)), 'ts', now)
end
return out

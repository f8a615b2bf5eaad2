-- claim: take up to N ready jobs, best first, under a fresh lease.
-- KEYS[1] ready zset   KEYS[2] inflight zset   KEYS[3] ratelimit hash   KEYS[4] paused flag
-- ARGV[1] N (max jobs)   ARGV[2] visibility (ms)   ARGV[3] lease token
-- Returns {code, wait_ms, job, job, ...}; each job is the list of its values of
--   relay_trio.job.FIELDS, in that order (the HMGET below; false = unset), as
--   they stand after the claim (attempts, state, lease and deadline updated).
--   code 1 = claimed (maybe none: the queue is empty), 2 = paused,
--   3 = rate limited (wait_ms: when a token will be there, 1 ms to 1 day).
-- Rate limit: token bucket {rate/s, burst} refilled from the server clock; a
-- token is consumed only for a job actually popped. A bucket that is not
-- {rate > 0, burst >= 1} (written by something else) fails the claim.
-- Everything is read (and type-checked) before the first write.
if redis.call('EXISTS', KEYS[4]) == 1 then return {2, 0} end
expect(KEYS[1], 'zset')
expect(KEYS[2], 'zset')
expect(KEYS[3], 'hash')
local base = key_base(KEYS[1])
local want, vis, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local rl = redis.call('HMGET', KEYS[3], 'rate', 'burst', 'tokens', 'ts')
local rate, burst, tokens = tonumber(rl[1]), tonumber(rl[2]), nil
if rl[1] or rl[2] then
  if not (rate and burst and rate > 0 and rate < math.huge and burst >= 1 and burst < math.huge) then
    error('ERR ' .. KEYS[3] .. ' is not a valid rate limit (rate > 0, burst >= 1)', 0)
  end
  tokens = tonumber(rl[3]) or burst
  if tokens ~= tokens or tokens > burst then tokens = burst end  -- NaN or foreign
  local ts = tonumber(rl[4]) or now
  if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end
  if tokens < 1 then
    redis.call('HSET', KEYS[3], 'tokens', tostring(tokens), 'ts', now)
    local wait = math.ceil((1 - tokens) * 1000 / rate)
    return {3, math.max(1, math.min(wait, 86400000))}
  end
  want = math.min(want, math.floor(tokens))
end
local ids = redis.call('ZRANGE', KEYS[1], 0, want - 1)
local out = {1, 0}
local deadline = now + vis
local found = {}
for i, id in ipairs(ids) do
  local jk = base .. 'job:' .. id
  local f = redis.call('HMGET', jk, 'id', 'queue', 'payload', 'state',
    'attempts', 'max_retries', 'priority', 'created_at', 'idempotency_key', 'lease',
    'last_error', 'ready_at', 'deadline', 'dead_at', 'timeout_ms')
  if f[1] then found[i] = f end
end
-- writes from here on
in_chunks(ids, function(...) redis.call('ZREM', KEYS[1], ...) end)
local leased = {}
for i, id in ipairs(ids) do
  local f = found[i]
  if f then  -- an id whose hash is gone is only dropped from ready
    f[4], f[5], f[10], f[13] = 'inflight', (tonumber(f[5]) or 0) + 1, lease, deadline
    redis.call('HSET', base .. 'job:' .. id, 'attempts', f[5], 'state', 'inflight',
      'lease', lease, 'deadline', deadline, 'reaped_lease', '')
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

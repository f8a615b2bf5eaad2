-- _lib: helpers that relay_trio.redis_io puts in front of every script's source
-- (Redis has no includes). It reads no KEYS or ARGV of its own.

-- The base ("P:{q}:") of a declared key ("P:{q}:ready"): its text up to and
-- including the first "{tag}:". Every key a script builds that is not in its
-- KEYS (a job's hash after a pop, its end-notification list, a dedup key) starts
-- with the base of KEYS[1], so it has the same hash tag and provably the same
-- Redis Cluster slot. (A prefix never holds a brace; a queue name neither.)
local function key_base(key)
  local base = string.match(key, '^[^{}]*{[^{}]+}:')
  if not base then
    error('ERR ' .. key .. ' has no {hash tag}: not a relay-trio key', 0)
  end
  return base
end

-- the Redis server's clock, in ms: every deadline and score comes from it
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- ready-set score: priority first (higher first), then enqueue sequence (older
-- first), for ZPOPMIN; both below 2^53, formatted so no digit is lost
local function ready_score(priority, seq)
  return string.format('%.0f', (255 - tonumber(priority)) * 35184372088832 + tonumber(seq))
end

-- wake-up hints for idle workers: one per job made ready, at most 16 kept
local function hint(key, n)
  if n > 0 then
    local ones = {}
    for i = 1, math.min(n, 16) do ones[i] = '1' end
    redis.call('LPUSH', key, unpack(ones))
    redis.call('LTRIM', key, 0, 15)
  end
end


-- fn(...) over the whole of list, at most 1000 elements per call (unpack has a limit)
local function in_chunks(list, fn)
  for i = 1, #list, 1000 do
    fn(unpack(list, i, math.min(i + 999, #list)))
  end
end

-- Checks that run before a script's first write, so that a script that fails
-- leaves Redis exactly as it found it. A key of another type (written by
-- something else) fails the script with WRONGTYPE, naming the key.
local function key_type(key)
  return redis.call('TYPE', key)['ok']
end

local function expect(key, kind)
  local t = key_type(key)
  if t ~= 'none' and t ~= kind then
    error('WRONGTYPE ' .. key .. ' holds a ' .. t .. ', not a ' .. kind, 0)
  end
  return t
end

-- a counter: absent, or a string holding an integer
local function expect_counter(key)
  if expect(key, 'string') == 'string' then
    local v = redis.call('GET', key)
    if not string.match(v, '^%-?%d+$') or string.len(v) > 18 then
      error('ERR ' .. key .. ' holds ' .. string.format('%q', string.sub(v, 1, 40)) ..
        ', not a counter', 0)
    end
  end
end

-- Bounded retention of the dead-letter list: drop the oldest dead jobs (and
-- their hashes) while the list is longer than max_len, then those that died
-- before cutoff_ms; at most 1000 per call. An entry whose hash is gone or
-- unreadable is dropped as well. Adds the count to the trimmed counter; returns it.
-- (Runs after the checks above: its reads cannot fail.)
local function trim_dlq(base, dlq, trimmed_key, max_len, cutoff_ms)
  local over = redis.call('LLEN', dlq) - max_len
  local trimmed = 0
  while trimmed < 1000 do
    local id = redis.call('LINDEX', dlq, 0)
    if not id then break end
    if trimmed >= over then
      local at = redis.pcall('HGET', base .. 'job:' .. id, 'dead_at')
      if type(at) == 'string' and tonumber(at) and tonumber(at) >= cutoff_ms then break end
    end
    redis.call('LPOP', dlq)
    redis.call('DEL', base .. 'job:' .. id)
    trimmed = trimmed + 1
  end
  if trimmed > 0 then redis.call('INCRBY', trimmed_key, trimmed) end
  return trimmed
end

-- Wake whoever waits for job id's end (watch.lua counted them in the hash's
-- 'waiters'): one token each in the job's end-notification list, kept 70 s.
local function notify_end(base, id, waiters)
  local n = tonumber(waiters) or 0
  if n > 0 then
    local key = base .. 'ended:' .. id
    local ones = {}
    for i = 1, math.min(n, 1000) do ones[i] = '1' end
    redis.call('LPUSH', key, unpack(ones))
    redis.call('PEXPIRE', key, 70000)
  end
end

-- Job id ends 'cancelled' (it is in no set any more): kept keep_ms, listed in
-- the cancelled zset (score: when it expires), its waiters woken.
local function end_cancelled(base, id, cancelled, keep_ms, now, waiters)
  local jk = base .. 'job:' .. id
  redis.call('HSET', jk, 'state', 'cancelled', 'lease', '', 'finished_at', now)
  redis.call('HDEL', jk, 'deadline', 'cancel_requested', 'waiters', 'reaped_lease')
  redis.call('PEXPIRE', jk, keep_ms)
  redis.call('ZADD', cancelled, now + keep_ms, id)
  redis.call('ZREMRANGEBYSCORE', cancelled, '-inf', now)
  notify_end(base, id, waiters)
end

-- _lib: helpers that relay_trio.redis_io puts in front of every script's source
-- (Redis has no includes). It reads no KEYS or ARGV of its own.

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

-- promote: delayed jobs whose ready-at time has come go to ready, keeping priority.
-- KEYS[1] delayed zset   KEYS[2] ready zset   KEYS[3] wake list
-- ARGV[1] queue key base   ARGV[2] at most this many jobs per call
-- Returns the number of jobs promoted.
-- wake-up hints for idle workers: one per job made ready, at most 16 kept
local function hint(key, n)
  if n > 0 then
    local ones = {}
    for i = 1, math.min(n, 16) do ones[i] = '1' end
    redis.call('LPUSH', key, unpack(ones))
    redis.call('LTRIM', key, 0, 15)
  end
end
local base = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local jk = base .. 'job:' .. id
  local j = redis.call('HMGET', jk, 'priority', 'seq')
  if j[1] then
    redis.call('HSET', jk, 'state', 'ready')
    redis.call('HDEL', jk, 'ready_at')
    local score = (255 - tonumber(j[1])) * 35184372088832 + tonumber(j[2])
    redis.call('ZADD', KEYS[2], string.format('%.0f', score), id)
    moved = moved + 1
  end
end
hint(KEYS[3], moved)
return moved

-- promote: delayed jobs whose ready-at time has come go to ready, keeping priority.
-- KEYS[1] delayed zset   KEYS[2] ready zset   KEYS[3] wake list
-- ARGV[1] at most this many jobs per call
-- Returns the number of jobs promoted. Every job is read before the first write.
expect(KEYS[1], 'zset')
expect(KEYS[2], 'zset')
expect(KEYS[3], 'list')
local base = key_base(KEYS[1])
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local jobs = {}
for i, id in ipairs(ids) do
  jobs[i] = redis.call('HMGET', base .. 'job:' .. id, 'priority', 'seq')
end
in_chunks(ids, function(...) redis.call('ZREM', KEYS[1], ...) end)
local moved = 0
for i, id in ipairs(ids) do
  local j = jobs[i]
  if j[1] then
    local jk = base .. 'job:' .. id
    redis.call('HSET', jk, 'state', 'ready')
    redis.call('HDEL', jk, 'ready_at')
    redis.call('ZADD', KEYS[2], ready_score(j[1], j[2] or 0), id)
    moved = moved + 1
  end
end
hint(KEYS[3], moved)
return moved

-- dlq_requeue: move dead jobs back to ready with attempts reset to 0.
-- KEYS[1] dlq list   KEYS[2] ready zset   KEYS[3] wake list
-- ARGV[1] mode: "one" or "all"
-- ARGV[2] the id (mode "one"), or at most this many jobs from the head (mode "all")
-- Returns the number of jobs requeued (0 for mode "one": the id is not in the DLQ).
-- Every job is read before the first write.
expect(KEYS[1], 'list')
expect(KEYS[2], 'zset')
expect(KEYS[3], 'list')
local base = key_base(KEYS[1])
local ids
if ARGV[1] == 'one' then
  if not redis.call('LPOS', KEYS[1], ARGV[2]) then return 0 end
  ids = {ARGV[2]}
else
  ids = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
end
local jobs = {}
for i, id in ipairs(ids) do
  jobs[i] = redis.call('HMGET', base .. 'job:' .. id, 'priority', 'seq')
end
if ARGV[1] == 'one' then
  redis.call('LREM', KEYS[1], 1, ARGV[2])
else
  redis.call('LTRIM', KEYS[1], #ids, -1)
end
local moved = 0
for i, id in ipairs(ids) do
  local j = jobs[i]
  if j[1] then
    local jk = base .. 'job:' .. id
    redis.call('HSET', jk, 'state', 'ready', 'attempts', 0, 'lease', '')
    redis.call('HDEL', jk, 'dead_at')
    redis.call('ZADD', KEYS[2], ready_score(j[1], j[2] or 0), id)
    moved = moved + 1
  end
end
hint(KEYS[3], moved)
return moved

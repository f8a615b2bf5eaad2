-- release: give jobs back to ready without using up an attempt (the worker
-- holding them is shutting down). Only jobs still in flight under the given
-- lease are touched; attempts goes back to what it was before the claim.
-- KEYS[1] inflight zset   KEYS[2] ready zset   KEYS[3] wake list
-- ARGV[1] the text for last_error   ARGV[2..] pairs: id, lease
-- Returns one entry per pair: 1 = released, 0 = stale lease (nothing changed).
-- Every job is read before the first write.
expect(KEYS[1], 'zset')
expect(KEYS[2], 'zset')
expect(KEYS[3], 'list')
local base = key_base(KEYS[1])
local text = ARGV[1]
local out, live, seen = {}, {}, {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local cur = redis.call('HMGET', base .. 'job:' .. id, 'state', 'lease', 'attempts',
    'priority', 'seq')
  if cur[1] == 'inflight' and cur[2] == ARGV[i + 1] and not seen[id] then
    seen[id] = true
    live[#live + 1] = {id, cur}
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
for _, entry in ipairs(live) do
  local id, cur = entry[1], entry[2]
  local jk = base .. 'job:' .. id
  redis.call('ZREM', KEYS[1], id)
  redis.call('HSET', jk, 'state', 'ready', 'lease', '', 'last_error', text,
    'attempts', math.max(0, (tonumber(cur[3]) or 1) - 1))
  redis.call('HDEL', jk, 'deadline')
  redis.call('ZADD', KEYS[2], ready_score(cur[4] or 0, cur[5] or 0), id)
end
hint(KEYS[3], #live)
return out

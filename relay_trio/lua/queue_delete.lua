-- queue_delete: delete a queue's jobs and keys, at most ARGV[2] jobs per call.
-- KEYS[1] ready zset   KEYS[2] inflight zset   KEYS[3] delayed zset   KEYS[4] dlq list
-- KEYS[5] done zset    KEYS[6] cancelled zset (jobs kept after they ended: they do
--   not make a queue 'hold jobs', and go with it)
-- KEYS[7..] the queue's other keys (counters, flags, rate limit, hints), deleted last
-- ARGV[1] "1" = force (delete jobs too)   ARGV[2] jobs per call
-- Returns {code, n}: code 0 = refused, the queue holds n jobs and force is off
--   (nothing deleted); 1 = done, n jobs deleted in this call (every key is gone);
--   2 = n jobs deleted, more remain: call again.
-- A job's dedup key goes with it while it still names that job; other dedup
-- keys expire on their own. A container of a foreign type holds no jobs of
-- ours: it is deleted with the rest. Every job is read before the first write.
local base = key_base(KEYS[1])
local force, limit = ARGV[1] == '1', tonumber(ARGV[2])
local kinds = {'zset', 'zset', 'zset', 'list', 'zset', 'zset'}
local held = 0
for k = 1, 4 do
  if key_type(KEYS[k]) == kinds[k] then
    if kinds[k] == 'zset' then held = held + redis.call('ZCARD', KEYS[k])
    else held = held + redis.call('LLEN', KEYS[k]) end
  end
end
if held > 0 and not force then return {0, held} end
local batch, total = {}, 0
for k = 1, 6 do
  if total < limit and key_type(KEYS[k]) == kinds[k] then
    local ids
    if kinds[k] == 'zset' then ids = redis.call('ZRANGE', KEYS[k], 0, limit - total - 1)
    else ids = redis.call('LRANGE', KEYS[k], 0, limit - total - 1) end
    batch[k] = ids
    total = total + #ids
  end
end
local dedup = {}
for k = 1, 6 do
  for _, id in ipairs(batch[k] or {}) do
    local ikey = redis.pcall('HGET', base .. 'job:' .. id, 'idempotency_key')
    if type(ikey) == 'string' and ikey ~= '' then
      local dk = base .. 'dedup:' .. ikey
      if redis.pcall('GET', dk) == id then dedup[#dedup + 1] = dk end
    end
  end
end
-- writes from here on
for k = 1, 6 do
  local ids = batch[k]
  if ids and #ids > 0 then
    if kinds[k] == 'zset' then
      in_chunks(ids, function(...) redis.call('ZREM', KEYS[k], ...) end)
    else
      redis.call('LTRIM', KEYS[k], #ids, -1)
    end
    for _, id in ipairs(ids) do redis.call('DEL', base .. 'job:' .. id) end
  end
end
in_chunks(dedup, function(...) redis.call('DEL', ...) end)
local left = 0
for k = 1, 6 do
  if key_type(KEYS[k]) == kinds[k] then
    if kinds[k] == 'zset' then left = left + redis.call('ZCARD', KEYS[k])
    else left = left + redis.call('LLEN', KEYS[k]) end
  end
end
if left > 0 then return {2, total} end
in_chunks(KEYS, function(...) redis.call('DEL', ...) end)
return {1, total}

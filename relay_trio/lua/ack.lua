-- ack: finish jobs that are still in flight under the given lease.
-- KEYS[1] inflight zset   KEYS[2] processed counter   KEYS[3] ready zset
-- KEYS[4] done zset (score: when the kept job expires)
-- ARGV[1] result TTL (ms; 0 = delete the job at once)
-- ARGV[2..] with TTL 0 pairs: id, lease; else triples: id, lease, result
--   (the result is 'j' .. JSON text or 'b' .. bytes)
-- Returns one entry per pair: 1 = acked (processed+1; the hash deleted, or kept
--   as 'done' with its result for the TTL), 0 = stale (the lease no longer
--   matches: re-claimed or finished; or the id came earlier in this call);
--   then, last, the Redis time (ms) of the ack (latency is measured on the
--   clock that stamped created_at).
-- A job that a reaper gave back to ready under this lease and that nobody has
-- claimed since (its reaped_lease is this lease) is acked too: the attempt
-- did finish, and nobody else runs the job. Once claimed again it is stale.
-- Waiters for the job's end (watch.lua) are woken. The writes go at the end,
-- after every read and check.
expect(KEYS[1], 'zset')
expect_counter(KEYS[2])
expect(KEYS[3], 'zset')
expect(KEYS[4], 'zset')
local base = key_base(KEYS[1])
local ttl = tonumber(ARGV[1])
local stride = 2
if ttl > 0 then stride = 3 end
local out, flying, waiting, hashes, done, kept = {}, {}, {}, {}, {}, {}
local now = now_ms()
for i = 2, #ARGV, stride do
  local id, lease = ARGV[i], ARGV[i + 1]
  local jk = base .. 'job:' .. id
  local cur
  if ttl > 0 then
    cur = redis.call('HMGET', jk, 'state', 'lease', 'reaped_lease', 'waiters', 'cancel_requested')
  else
    cur = redis.call('HMGET', jk, 'state', 'lease', 'reaped_lease', 'waiters')
  end
  local live = cur[1] == 'inflight' and cur[2] == lease
  local reaped = cur[1] == 'ready' and cur[3] == lease
  if (live or reaped) and not done[id] then
    done[id] = true
    if live then flying[#flying + 1] = id else waiting[#waiting + 1] = id end
    hashes[#hashes + 1] = jk
    if ttl > 0 or cur[4] then
      kept[#kept + 1] = {id, jk, ARGV[i + 2], cur[4], cur[3] or cur[4] or cur[5]}
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #hashes > 0 then
  in_chunks(flying, function(...) redis.call('ZREM', KEYS[1], ...) end)
  in_chunks(waiting, function(...) redis.call('ZREM', KEYS[3], ...) end)
  if ttl > 0 then
    for _, k in ipairs(kept) do
      local r = k[3]
      local kind = 'json'
      if string.sub(r, 1, 1) == 'b' then kind = 'bytes' end
      redis.call('HSET', k[2], 'state', 'done', 'lease', '', 'finished_at', now,
        'result', string.sub(r, 2), 'result_type', kind)
      if k[5] then
        redis.call('HDEL', k[2], 'deadline', 'reaped_lease', 'waiters', 'cancel_requested')
      else
        redis.call('HDEL', k[2], 'deadline')
      end
      redis.call('PEXPIRE', k[2], ttl)
      redis.call('ZADD', KEYS[4], now + ttl, k[1])
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  else
    in_chunks(hashes, function(...) redis.call('DEL', ...) end)
  end
  for _, k in ipairs(kept) do
    if k[4] then notify_end(base, k[1], k[4]) end
  end
  redis.call('INCRBY', KEYS[2], #hashes)
end
out[#out + 1] = now
return out

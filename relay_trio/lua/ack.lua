-- ack: finish jobs that are still in flight under the given lease.
-- KEYS[1] inflight zset   KEYS[2] processed counter   KEYS[3] ready zset
-- ARGV[1] queue key base   ARGV[2..] pairs: id, lease
-- Returns one entry per pair: 1 = acked (hash deleted, processed+1),
--   0 = stale (the lease no longer matches: re-claimed or finished; or the
--   pair came earlier in this call).
-- A job that a reaper gave back to ready under this lease and that nobody has
-- claimed since (its reaped_lease is this lease) is acked too: the attempt
-- did finish, and nobody else runs the job. Once claimed again it is stale.
-- The ZREM and DEL go in chunks at the end, after every read and check.
expect(KEYS[1], 'zset')
expect_counter(KEYS[2])
expect(KEYS[3], 'zset')
local base = ARGV[1]
local out, flying, waiting, hashes, done = {}, {}, {}, {}, {}
for i = 2, #ARGV, 2 do
  local id, lease = ARGV[i], ARGV[i + 1]
  local jk = base .. 'job:' .. id
  local cur = redis.call('HMGET', jk, 'state', 'lease', 'reaped_lease')
  local live = cur[1] == 'inflight' and cur[2] == lease
  local reaped = cur[1] == 'ready' and cur[3] == lease
  if (live or reaped) and not done[id] then
    done[id] = true
    if live then flying[#flying + 1] = id else waiting[#waiting + 1] = id end
    hashes[#hashes + 1] = jk
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #hashes > 0 then
  in_chunks(flying, function(...) redis.call('ZREM', KEYS[1], ...) end)
  in_chunks(waiting, function(...) redis.call('ZREM', KEYS[3], ...) end)
  in_chunks(hashes, function(...) redis.call('DEL', ...) end)
  redis.call('INCRBY', KEYS[2], #hashes)
end
return out

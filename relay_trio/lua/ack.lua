-- ack: finish jobs that are still in flight under the given lease.
-- KEYS[1] inflight zset   KEYS[2] processed counter
-- ARGV[1] queue key base   ARGV[2..] pairs: id, lease
-- Returns one entry per pair: 1 = acked (hash deleted, processed+1),
--   0 = stale (the lease no longer matches: reaped, re-claimed or finished;
--   or the pair came earlier in this call). The ZREM and DEL go in chunks at the end,
--   after every read and check.
expect(KEYS[1], 'zset')
expect_counter(KEYS[2])
local base = ARGV[1]
local out, ids, hashes, done = {}, {}, {}, {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local jk = base .. 'job:' .. id
  local cur = redis.call('HMGET', jk, 'state', 'lease')
  if cur[1] == 'inflight' and cur[2] == ARGV[i + 1] and not done[id] then
    done[id] = true
    ids[#ids + 1] = id
    hashes[#hashes + 1] = jk
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #ids > 0 then
  in_chunks(ids, function(...) redis.call('ZREM', KEYS[1], ...) end)
  in_chunks(hashes, function(...) redis.call('DEL', ...) end)
  redis.call('INCRBY', KEYS[2], #ids)
end
return out

-- ack: finish jobs that are still in flight under the given lease.
-- KEYS[1] inflight zset   KEYS[2] processed counter
-- ARGV[1] queue key base   ARGV[2..] pairs: id, lease
-- Returns one entry per pair: 1 = acked (hash deleted, processed+1),
--   0 = stale (the lease no longer matches: reaped, re-claimed or finished).
local base = ARGV[1]
local out, acked = {}, 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local jk = base .. 'job:' .. id
  local cur = redis.call('HMGET', jk, 'state', 'lease')
  if cur[1] == 'inflight' and cur[2] == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('DEL', jk)
    acked = acked + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if acked > 0 then redis.call('INCRBY', KEYS[2], acked) end
return out

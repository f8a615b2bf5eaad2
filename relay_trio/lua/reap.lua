-- reap: in-flight jobs whose visibility deadline passed go back to ready with
-- their priority (attempts unchanged), or to the DLQ when their attempts are spent.
-- A requeued job keeps its last lease as reaped_lease until its next claim, so
-- that a late ack of the attempt that finished still counts (see ack.lua).
-- Then the DLQ's TTL and cap are applied (oldest first), so retention holds
-- even when nothing new dies.
-- KEYS[1] inflight zset   KEYS[2] ready zset   KEYS[3] dlq list   KEYS[4] dead counter
-- KEYS[5] wake list       KEYS[6] dlq-trimmed counter
-- KEYS[7] aborting zset    KEYS[8] cancelled zset
-- ARGV[1] at most this many jobs per call
-- ARGV[2] DLQ cap (jobs)   ARGV[3] DLQ TTL (ms)   ARGV[4] how long a cancelled job is kept (ms)
-- A job whose abort was requested (cancel.lua) ends 'cancelled' instead: the
-- worker that was to abort it is gone. Jobs that end wake their waiters.
-- Returns {requeued, dead_lettered, dlq_trimmed, cancelled}. Every job is read before the first write.
expect(KEYS[1], 'zset')
expect(KEYS[2], 'zset')
expect(KEYS[3], 'list')
expect_counter(KEYS[4])
expect(KEYS[5], 'list')
expect_counter(KEYS[6])
expect(KEYS[7], 'zset')
expect(KEYS[8], 'zset')
local base = key_base(KEYS[1])
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local jobs = {}
for i, id in ipairs(ids) do
  jobs[i] = redis.call('HMGET', base .. 'job:' .. id, 'attempts', 'max_retries', 'priority', 'seq',
    'lease', 'cancel_requested', 'waiters')
end
local requeued, dead, cancelled = 0, 0, 0
in_chunks(ids, function(...) redis.call('ZREM', KEYS[1], ...) end)
for i, id in ipairs(ids) do
  local jk, j = base .. 'job:' .. id, jobs[i]
  if j[1] then
    local attempts = tonumber(j[1]) or 0
    local err = 'visibility timeout expired on attempt ' .. attempts
    if j[6] == '1' then
      redis.call('ZREM', KEYS[7], id)
      redis.call('HSET', jk, 'last_error', 'aborted: ' .. err)
      end_cancelled(base, id, KEYS[8], tonumber(ARGV[4]), now, j[7])
      cancelled = cancelled + 1
    elseif attempts >= (tonumber(j[2]) or 0) then
      redis.call('HSET', jk, 'state', 'dead', 'lease', '', 'last_error', err, 'dead_at', now)
      redis.call('HDEL', jk, 'deadline')
      redis.call('RPUSH', KEYS[3], id)
      notify_end(base, id, j[7])
      dead = dead + 1
    else
      redis.call('HSET', jk, 'state', 'ready', 'lease', '', 'last_error', err,
        'reaped_lease', j[5] or '')
      redis.call('HDEL', jk, 'deadline')
      redis.call('ZADD', KEYS[2], ready_score(j[3] or 0, j[4] or 0), id)
      requeued = requeued + 1
    end
  end
end
if dead > 0 then redis.call('INCRBY', KEYS[4], dead) end
hint(KEYS[5], requeued)
local trimmed = trim_dlq(base, KEYS[3], KEYS[6], tonumber(ARGV[2]), now - tonumber(ARGV[3]))
return {requeued, dead, trimmed, cancelled}

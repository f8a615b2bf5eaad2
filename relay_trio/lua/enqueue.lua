-- enqueue: add one or more jobs to a queue; each job is all-or-nothing.
-- KEYS[1] ready zset     KEYS[2] delayed zset     KEYS[3] seq counter   KEYS[4] wake list
-- ARGV[1] queue name   ARGV[2] dedup TTL (s)
-- ARGV[3..] 8 fields per job: id, payload, priority, max_retries, delay_ms,
--           ready_at_ms ("" = use delay_ms), idempotency_key ("" = none),
--           timeout_ms ("" = the worker's default)
-- Returns a flat list, 3 entries per job: code, id, state
--   code 1 = ready, 2 = delayed, 0 = duplicate: id is the job that holds the
--   idempotency key (or already has this id), state its state ("" once it is
--   gone: acked or deleted); nothing is written for a duplicate.
-- Every key's type is checked before the first write: a key of another type
-- fails the whole call with nothing written.
local base = key_base(KEYS[1])
local queue, ttl = ARGV[1], ARGV[2]
local W = 8
expect(KEYS[1], 'zset')
expect(KEYS[2], 'zset')
expect_counter(KEYS[3])
expect(KEYS[4], 'list')
local taken = {}  -- ids whose hash exists already (a duplicate id), or came earlier in this call
for o = 3, #ARGV, W do
  local id = ARGV[o]
  if expect(base .. 'job:' .. id, 'hash') == 'hash' then taken[id] = true end
  local ikey = ARGV[o + 6]
  if ikey ~= '' then
    local dk = base .. 'dedup:' .. ikey
    if expect(dk, 'string') == 'string' then
      expect(base .. 'job:' .. redis.call('GET', dk), 'hash')
    end
  end
end

local now = now_ms()
local out, readied = {}, 0
for o = 3, #ARGV, W do
  local id, payload, prio, maxr = ARGV[o], ARGV[o + 1], tonumber(ARGV[o + 2]), ARGV[o + 3]
  local delay, ready_at, ikey = tonumber(ARGV[o + 4]), ARGV[o + 5], ARGV[o + 6]
  local timeout = ARGV[o + 7]
  local jk = base .. 'job:' .. id
  local dup = nil
  if taken[id] then
    dup = id
  elseif ikey ~= '' then
    local dk = base .. 'dedup:' .. ikey
    if not redis.call('SET', dk, id, 'NX', 'EX', ttl) then
      dup = redis.call('GET', dk)
    end
  end
  if dup then
    out[#out + 1] = 0
    out[#out + 1] = dup
    out[#out + 1] = redis.call('HGET', base .. 'job:' .. dup, 'state') or ''
  else
    local due = now + delay
    if ready_at ~= '' then due = tonumber(ready_at) end
    taken[id] = true
    local seq = redis.call('INCR', KEYS[3])
    local state = 'ready'
    if due > now then state = 'delayed' end
    redis.call('HSET', jk, 'id', id, 'queue', queue, 'payload', payload, 'state', state,
      'attempts', 0, 'max_retries', maxr, 'priority', prio, 'created_at', now,
      'idempotency_key', ikey, 'seq', seq)
    if timeout ~= '' then redis.call('HSET', jk, 'timeout_ms', timeout) end
    if state == 'delayed' then
      redis.call('HSET', jk, 'ready_at', string.format('%.0f', due))
      redis.call('ZADD', KEYS[2], string.format('%.0f', due), id)
      out[#out + 1] = 2
    else
      redis.call('ZADD', KEYS[1], ready_score(prio, seq), id)
      out[#out + 1] = 1
      readied = readied + 1
    end
    out[#out + 1] = id
    out[#out + 1] = state
  end
end
hint(KEYS[4], readied)
return out

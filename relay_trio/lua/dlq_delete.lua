-- dlq_delete: remove dead jobs for good (their hashes too).
-- KEYS[1] dlq list
-- ARGV[1] mode: "one" or "all"
-- ARGV[2] the id (mode "one"), or at most this many jobs from the head (mode "all")
-- Returns the number of jobs deleted (0 for mode "one": the id is not in the DLQ).
expect(KEYS[1], 'list')
local base = key_base(KEYS[1])
local ids
if ARGV[1] == 'one' then
  if redis.call('LREM', KEYS[1], 1, ARGV[2]) == 0 then return 0 end
  ids = {ARGV[2]}
else
  ids = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
  redis.call('LTRIM', KEYS[1], #ids, -1)
end
for _, id in ipairs(ids) do
  redis.call('DEL', base .. 'job:' .. id)
end
return #ids

-- dlq_delete: remove dead jobs for good (their hashes too).
-- KEYS[1] dlq list
-- ARGV[1] queue key base   ARGV[2] mode: "one" or "all"
-- ARGV[3] the id (mode "one"), or at most this many jobs from the head (mode "all")
-- Returns the number of jobs deleted (0 for mode "one": the id is not in the DLQ).
expect(KEYS[1], 'list')
local base = ARGV[1]
local ids
if ARGV[2] == 'one' then
  if redis.call('LREM', KEYS[1], 1, ARGV[3]) == 0 then return 0 end
  ids = {ARGV[3]}
else
  ids = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
  redis.call('LTRIM', KEYS[1], #ids, -1)
end
for _, id in ipairs(ids) do
  redis.call('DEL', base .. 'job:' .. id)
end
return #ids

-- schedule_fired: record that schedule ARGV[1] fired at ARGV[2] (ms), unless a
-- later fire time is recorded already (a slow worker never moves it back).
-- KEYS[1] the schedules' last-fire hash (name -> ms)
-- Returns 1 if recorded, 0 if a later one was there.
expect(KEYS[1], 'hash')
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '')
if last and last >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1

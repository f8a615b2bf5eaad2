-- resume: allow claims from a paused queue again, and wake its idle workers.
-- KEYS[1] paused flag   KEYS[2] wake list
-- Returns 1.
expect(KEYS[2], 'list')
redis.call('DEL', KEYS[1])
hint(KEYS[2], 16)
return 1

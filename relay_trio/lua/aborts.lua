-- aborts: the ids of jobs whose abort was requested (cancel.lua), for the
-- workers' abort check; entries older than ARGV[1] ms are dropped first (their
-- jobs ended long ago, or the reaper has cancelled them).
-- KEYS[1] aborting zset   ARGV[1] max age (ms)
-- Returns at most 10 000 ids.
expect(KEYS[1], 'zset')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms() - tonumber(ARGV[1]))
return redis.call('ZRANGE', KEYS[1], 0, 9999)

-- Publishes a typing notice in a private room unless either member
-- blocked the other: the check and the publish in one step, so a block
-- silences the room at once on every instance.
-- KEYS: the room's blocked set (room:{ROOM}:blocked).
-- ARGV: publish command ('PUBLISH', or 'SPUBLISH' to the room's shard
--       channel on a cluster), channel, envelope.
-- Returns 1 when published, 0 when dropped.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call(ARGV[1], ARGV[2], ARGV[3])
return 1

-- Adds a private room to the room set of the user who opens it, counting
-- it against their limit on new private rooms (PRIVATE_ROOM_RATE_LIMIT)
-- in the same step, so parallel requests cannot all pass. A room the
-- user has already is free.
-- KEYS: the opener's room set (user:{id}:rooms), the opener's counter
--       (its hash tag is the set's name, so both are in one slot).
-- ARGV: room id, count (0 = no limit), window ms.
-- Returns {1, 0} added, {0, 0} the opener had it already, {2, retry ms}
-- over the limit (nothing added).
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {0, 0} end
if ARGV[2] ~= '0' then
  local n = redis.call('INCR', KEYS[2])
  if n == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
  if n > tonumber(ARGV[2]) then return {2, redis.call('PTTL', KEYS[2])} end
end
redis.call('SADD', KEYS[1], ARGV[1])
return {1, 0}

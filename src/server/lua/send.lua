-- Stores a message and publishes it, in one round trip.
-- KEYS: room stream, nonce key, sender's rate key, the room's blocked set
--       (members of a private room who blocked the other; absent elsewhere),
--       the room's newest id (what the room list orders rooms by).
-- ARGV: from, message, server id, room id, nonce ('' = none), nonce TTL s,
--       channel, rate count (0 = none), rate window ms, publish command
--       ('PUBLISH', or 'SPUBLISH' to the room's shard channel on a cluster),
--       messages to keep (0 = all; else XADD MAXLEN ~: whole stream nodes
--       are dropped, so a room keeps at least that many and about 100
--       more), the longest age of a message in ms (0 = any; else an exact
--       XTRIM MINID, which removes only what just became too old).
-- Returns {1, id} for a new message, {0, id} when the nonce was seen
-- before (nothing is stored or published again), {2, retry ms} when the
-- sender's rate limit is reached, {3, 'me'} when the sender blocked the
-- other member and {3, ''} when the other member blocked the sender
-- (nothing is stored or published; a resend of a message stored before
-- the block still gets its original).
local nonce = ARGV[5]
if nonce ~= '' then
  local prior = redis.call('GET', KEYS[2])
  if prior then return {0, prior} end
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 1 then return {3, 'me'} end
  return {3, ''}
end
if ARGV[8] ~= '0' then
  local n = redis.call('INCR', KEYS[3])
  if n == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[9]) end
  if n > tonumber(ARGV[8]) then return {2, tostring(redis.call('PTTL', KEYS[3]))} end
end
local id
if ARGV[11] ~= '0' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[11], '*', 'from', ARGV[1], 'message', ARGV[2])
else
  id = redis.call('XADD', KEYS[1], '*', 'from', ARGV[1], 'message', ARGV[2])
end
local ms = tonumber(string.match(id, '^(%d+)-'))
if ARGV[12] ~= '0' and ms > tonumber(ARGV[12]) then
  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d', ms - tonumber(ARGV[12])))
end
redis.call('SET', KEYS[5], id)
if nonce ~= '' then redis.call('SET', KEYS[2], id, 'EX', ARGV[6]) end
local data = {id = id, roomId = ARGV[4], from = tonumber(ARGV[1]),
              date = math.floor(ms / 1000), dateMs = ms, message = ARGV[2]}
if nonce ~= '' then data['nonce'] = nonce end
redis.call(ARGV[10], ARGV[7], cjson.encode({serverId = ARGV[3], type = 'message', data = data}))
return {1, id}

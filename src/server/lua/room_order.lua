-- The newest message id of each of some rooms: all the room list needs to
-- order a user's rooms before it reads the lines of one page of them
-- (`lua/summary.lua`). One call covers many rooms on a single Redis (a
-- script call costs far more than the reads in it); a cluster reads each
-- room's stream with a plain XREVRANGE instead.
-- KEYS: the rooms' streams.
-- ARGV: none.
-- Returns per key the newest entry id, or false for an empty room.
local out = {}
for i, stream in ipairs(KEYS) do
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if newest[1] then out[i] = newest[1][1] else out[i] = false end
end
return out

-- The newest message id of rooms whose `room:{R}:last` is not set yet
-- (history written before it existed, or not by `lua/send.lua`): read
-- from the stream and written back unless a send set it meanwhile, so the
-- next listing reads it with the others. One call covers many rooms on a
-- single Redis (a script call costs far more than the reads in it); a
-- cluster reads each room's stream with a plain XREVRANGE instead.
-- KEYS: per room, its stream and its `last` key.
-- ARGV: none.
-- Returns per room the newest entry id, or false for an empty room.
local out = {}
for r = 1, #KEYS / 2 do
  local stream, last = KEYS[r * 2 - 1], KEYS[r * 2]
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if newest[1] then
    out[r] = newest[1][1]
    redis.call('SET', last, out[r], 'NX')
  else
    out[r] = false
  end
end
return out

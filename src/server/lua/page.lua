-- A range of a room's messages with their edits, in one call.
-- KEYS: room stream, room edits hash.
-- ARGV: 'rev' (XREVRANGE end start) or 'fwd' (XRANGE start end), the two
--       range bounds, count.
-- Returns {entries, edits}: edits is empty when the room has none, else
-- one value (or false) per entry.
local entries
if ARGV[1] == 'rev' then
  entries = redis.call('XREVRANGE', KEYS[1], ARGV[2], ARGV[3], 'COUNT', ARGV[4])
else
  entries = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[3], 'COUNT', ARGV[4])
end
local edits = {}
if #entries > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  local ids = {}
  for i, entry in ipairs(entries) do ids[i] = entry[1] end
  edits = redis.call('HMGET', KEYS[2], unpack(ids))
end
return {entries, edits}

-- What the room list shows of one room for one user: the newest message
-- (with its edit, if any), the unread count, and the read marks.
-- KEYS: room stream, room read hash, room edits hash.
-- ARGV: user id, other member id ('' = none), unread cap.
-- Returns {newest entry list, unread, own mark, other's mark, edit of newest}.
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local mine = redis.call('HGET', KEYS[2], ARGV[1])
local peer = false
if ARGV[2] ~= '' then peer = redis.call('HGET', KEYS[2], ARGV[2]) end
local cap = tonumber(ARGV[3])
local unread = 0
local start = '-'
if mine then start = '(' .. mine end
-- Own messages do not count; a bounded scan (own messages in a row
-- beyond it are rare and only make the count low).
for _ = 1, 5 do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 100)
  for _, entry in ipairs(batch) do
    local fields = entry[2]
    local from = nil
    for i = 1, #fields, 2 do
      if fields[i] == 'from' then from = fields[i + 1] end
    end
    if from ~= ARGV[1] then unread = unread + 1 end
    if unread >= cap then break end
  end
  if unread >= cap or #batch < 100 then break end
  start = '(' .. batch[#batch][1]
end
local edit = false
if #newest > 0 then edit = redis.call('HGET', KEYS[3], newest[1][1]) end
return {newest, unread, mine, peer, edit}

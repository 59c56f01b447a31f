-- What the room list shows of some rooms for one user: per room the
-- newest message (with its edit, if any), the unread count, the read
-- marks and, when asked for, the room's name. One call covers many rooms
-- on a single Redis (a script call costs far more than the reads in it);
-- on a cluster each room is a call of its own (its keys are one slot).
-- KEYS: per room, KPR keys: stream, read hash, edits hash, and with
--       KPR = 4 the name key (a private room's other member's user hash,
--       or a public room's name string).
-- ARGV: user id, unread cap, KPR (3 or 4), then per room the other
--       member id ('' = a public room).
-- Returns per room {newest entry list, unread, own mark, other's mark,
-- edit of newest, name (false when not asked for or absent)}.
local user = ARGV[1]
local cap = tonumber(ARGV[2])
local kpr = tonumber(ARGV[3])
local lines = {}
for r = 0, #KEYS / kpr - 1 do
  local stream, read, edits = KEYS[r * kpr + 1], KEYS[r * kpr + 2], KEYS[r * kpr + 3]
  local other = ARGV[4 + r]
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  local mine, peer
  if other ~= '' then
    local marks = redis.call('HMGET', read, user, other)
    mine, peer = marks[1], marks[2]
  else
    mine, peer = redis.call('HGET', read, user), false
  end
  local unread = 0
  -- Nothing after the mark (the usual case): no scan at all.
  local newest_id = newest[1] and newest[1][1]
  if newest_id and newest_id ~= mine then
    local start = '-'
    if mine then start = '(' .. mine end
    -- Own messages do not count; a bounded scan (own messages in a row
    -- beyond it are rare and only make the count low).
    for _ = 1, 5 do
      local batch = redis.call('XRANGE', stream, start, '+', 'COUNT', 100)
      for _, entry in ipairs(batch) do
        local fields = entry[2]
        local from = nil
        for i = 1, #fields, 2 do
          if fields[i] == 'from' then from = fields[i + 1] end
        end
        if from ~= user then unread = unread + 1 end
        if unread >= cap then break end
      end
      if unread >= cap or #batch < 100 then break end
      start = '(' .. batch[#batch][1]
    end
  end
  local edit = false
  if newest_id then edit = redis.call('HGET', edits, newest_id) end
  local name = false
  if kpr == 4 then
    if other ~= '' then
      name = redis.call('HGET', KEYS[r * kpr + 4], 'username')
    else
      name = redis.call('GET', KEYS[r * kpr + 4])
    end
  end
  lines[#lines + 1] = {newest, unread, mine, peer, edit, name}
end
return lines

-- Edits or deletes a message of its own sender, and publishes the result.
-- KEYS: room stream, room edits hash, sender's rate key, room generation
--       (bumped with every change: cached history pages compare it), the
--       room's blocked set (a blocked private room takes no edits; its
--       messages can still be deleted).
-- ARGV: message id, user id, new text, '1' to delete, channel, server id,
--       room id, rate count (0 = none), rate window ms, publish command
--       ('PUBLISH', or 'SPUBLISH' to the room's shard channel on a cluster),
--       '1' when rooms are trimmed (HISTORY_MAX_PER_ROOM or _AGE_DAYS).
-- Returns {1, edited ms}, {0} not found / already deleted, {3} not the
-- sender's, {2, retry ms} rate limited, {4} an edit in a blocked room.
local entry = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #entry == 0 then return {0} end
local fields = entry[1][2]
local from = nil
for i = 1, #fields, 2 do
  if fields[i] == 'from' then from = fields[i + 1] end
end
if from ~= ARGV[2] then return {3} end
if ARGV[4] ~= '1' and redis.call('EXISTS', KEYS[5]) == 1 then return {4} end
local prior = redis.call('HGET', KEYS[2], ARGV[1])
if prior and string.find(prior, '"deleted":true', 1, true) then return {0} end
if ARGV[8] ~= '0' then
  local n = redis.call('INCR', KEYS[3])
  if n == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[9]) end
  if n > tonumber(ARGV[8]) then return {2, redis.call('PTTL', KEYS[3])} end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(string.match(ARGV[1], '^(%d+)-'))
local data = {id = ARGV[1], roomId = ARGV[7], from = tonumber(from),
              date = math.floor(ms / 1000), dateMs = ms, editedMs = now}
redis.call('INCR', KEYS[4])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({deleted = true, editedMs = now}))
  data['message'] = ''
  data['deleted'] = true
else
  redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({message = ARGV[3], editedMs = now}))
  data['message'] = ARGV[3]
end
redis.call(ARGV[10], ARGV[5], cjson.encode({serverId = ARGV[6], type = 'message.updated', data = data}))
-- A trimmed stream leaves the edits of its dropped messages behind. Each
-- edit looks at up to 20 random edits and drops those older than the
-- stream's first entry: the hash grows by one per edit, so stale entries
-- stay a small share of it, at O(1) per edit.
if ARGV[11] == '1' then
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #first > 0 then
    local fms, fseq = string.match(first[1][1], '^(%d+)-(%d+)$')
    fms, fseq = tonumber(fms), tonumber(fseq)
    for _, old in ipairs(redis.call('HRANDFIELD', KEYS[2], 20)) do
      local ms, seq = string.match(old, '^(%d+)-(%d+)$')
      ms, seq = tonumber(ms), tonumber(seq)
      if ms and (ms < fms or (ms == fms and seq < fseq)) then
        redis.call('HDEL', KEYS[2], old)
      end
    end
  end
end
return {1, now}

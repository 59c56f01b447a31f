-- Copies the original demo's sorted-set history of one room into its
-- stream, once.
-- KEYS: room stream, import marker, room generation (all in the room's
--       slot: `room:{ROOM}:...`).
-- ARGV: the sorted set as `ZRANGE ... WITHSCORES` returned it (member,
--       score, ...), read by the caller: the demo's key `room:{id}` is in
--       another slot, so a cluster cannot read it inside the script.
-- The marker is checked and set here, so the import happens once even with
-- several instances starting. A non-empty import bumps the generation
-- (older history appeared: cached pages are stale).
-- Returns the number of messages copied.
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local items = ARGV
local last = -1
local n = 0
for i = 1, #items, 2 do
  local ok, msg = pcall(cjson.decode, items[i])
  if ok and type(msg) == 'table' and msg['message'] ~= nil then
    local ms = math.floor(tonumber(items[i + 1]) * 1000)
    if ms <= last then ms = last end
    last = ms
    local from = tostring(msg['from'] or '0')
    redis.call('XADD', KEYS[1], tostring(ms) .. '-*', 'from', from, 'message', tostring(msg['message']))
    n = n + 1
  end
end
redis.call('SET', KEYS[2], n)
if n > 0 then redis.call('INCR', KEYS[3]) end
return n

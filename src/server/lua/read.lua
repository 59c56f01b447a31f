-- Moves a user's read mark in one room forward, never back, and tells
-- the user's sockets (and the other member of a private room).
-- KEYS: room read hash, room stream.
-- ARGV: user id, message id or '+' (= the newest), channel, server id,
--       room id, partner id ('' = none), publish ('1'/'0'), publish command
--       ('PUBLISH', or 'SPUBLISH' to the room's shard channel on a cluster).
-- Returns the stored id, or false when nothing moved.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms then return nil end
  return tonumber(ms), tonumber(seq)
end
local function after(ams, aseq, bms, bseq)
  return ams > bms or (ams == bms and aseq > bseq)
end

local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #newest == 0 then return false end
local id = newest[1][1]
local ms, seq = parse(id)
if ARGV[2] ~= '+' then
  local wms, wseq = parse(ARGV[2])
  if not wms then return false end
  -- A mark past the newest message is clamped to it.
  if not after(wms, wseq, ms, seq) then
    id, ms, seq = ARGV[2], wms, wseq
  end
end
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local cms, cseq = parse(current)
  if cms and not after(ms, seq, cms, cseq) then return false end
end
redis.call('HSET', KEYS[1], ARGV[1], id)
if ARGV[7] == '1' then
  local to = {tonumber(ARGV[1])}
  if ARGV[6] ~= '' then table.insert(to, tonumber(ARGV[6])) end
  redis.call(ARGV[8], ARGV[3], cjson.encode({
    serverId = ARGV[4], type = 'read', to = to,
    data = {roomId = ARGV[5], id = id, userId = tonumber(ARGV[1])}}))
end
return id

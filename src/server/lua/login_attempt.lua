-- Admits a sign-in attempt for one account to the password check, or says
-- how long it must wait, and counts it BEFORE bcrypt runs, so that guesses
-- sent in parallel see each other (the policy: src/server/limits.rs).
-- KEYS (one slot: all carry the account's hash tag, ratelimit:login:{name}):
--   1 …:addr:ADDR       attempts for the account from this address (TTL: window)
--   2 …:addr:ADDR:wait  exists while this address must wait for the account
--   3 …:all             attempts for the account from every address (TTL: window)
--   4 …:all:wait        exists while every address must wait for the account
-- ARGV: 1 free attempts per address, 2 window ms, 3 longest wait ms,
--       4 attempts per account before spacing, 5 spacing ms.
-- Returns {0, 0}: go on (counted); {1, ms}: this address waits ms;
--         {2, ms}: the account waits ms (nothing counted when waiting).
local wait = redis.call('PTTL', KEYS[2])
if wait > 0 then return {1, wait} end
wait = redis.call('PTTL', KEYS[4])
if wait > 0 then return {2, wait} end

local function count(key)
  local n = redis.call('INCR', key)
  if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[2]) end
  return n
end
local here = count(KEYS[1])
local all = count(KEYS[3])

-- From the last free attempt on, the next one from this address waits
-- 1 s, then 2 s, 4 s … (set now, so a parallel guess already waits).
local free = tonumber(ARGV[1])
if here >= free then
  local delay = math.min(1000 * 2 ^ math.min(here - free, 20), tonumber(ARGV[3]))
  redis.call('SET', KEYS[2], '1', 'PX', math.floor(delay))
end
if all > tonumber(ARGV[4]) then
  redis.call('SET', KEYS[4], '1', 'PX', ARGV[5])
end
return {0, 0}

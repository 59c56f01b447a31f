-- Counts one more event in a fixed window and says how many there were,
-- atomically (a counter can never be left without its expiry).
-- KEYS: the counter (a string; its TTL is what is left of the window).
-- ARGV: the window in ms.
-- Returns {count including this one, ms until the window ends}.
local n = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  -- The first event opens the window.
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {n, left}

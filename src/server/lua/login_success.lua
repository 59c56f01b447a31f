-- A right password: forgets this address's attempts for the account and
-- its wait, and takes the attempt back from the account's count (it was
-- no guess). Other addresses' counts stay.
-- KEYS (one slot, the account's hash tag ratelimit:login:{name}):
--   1 …:addr:ADDR, 2 …:addr:ADDR:wait, 3 …:all (see login_attempt.lua).
-- ARGV: none.
-- Returns 1.
redis.call('DEL', KEYS[1], KEYS[2])
if tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then
  redis.call('DECR', KEYS[3])
end
return 1

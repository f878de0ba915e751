package redisstore

// The scripts run atomically on the server: a compare and its write cannot
// interleave with another process's. Each publishes the change it made on
// the changes channel in the same step, so a change is announced if and only
// if it happened.
//
// A change message is binary-safe, whatever bytes a scope holds:
//
//	open <epoch> <len(scope)>:<scope><trip JSON>
//	clear <epoch> <len(scope)>:<scope>[<JSON of the trip that was open>]
//	mode <mode epoch> enforce|observe

// claimScript records a trip unless its scope is open or the trip is stale.
//
//	KEYS[1] open latches (hash: scope -> trip JSON)
//	KEYS[2] epochs (hash: scope -> decimal epoch)
//	ARGV[1] scope, ARGV[2] the trip's epoch, ARGV[3] the trip's JSON,
//	ARGV[4] changes channel
//
// It returns {claimed (0 or 1), the scope's epoch, the open trip or nil}.
const claimScript = `
local cur = redis.call('HGET', KEYS[2], ARGV[1]) or '0'
local open = redis.call('HGET', KEYS[1], ARGV[1])
if open or tonumber(ARGV[2]) < tonumber(cur) then
	return {0, cur, open}
end
if tonumber(ARGV[2]) > tonumber(cur) then
	redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
	cur = ARGV[2]
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], 'open ' .. cur .. ' ' .. #ARGV[1] .. ':' .. ARGV[1] .. ARGV[3])
return {1, cur, ARGV[3]}
`

// clearScript advances a scope's epoch and closes its latch.
//
//	KEYS[1] open latches, KEYS[2] epochs
//	ARGV[1] scope, ARGV[2] changes channel
//
// It returns {the epoch, the trip that was open or nil}. A scope that is
// not open is left as it is: resets of scopes nobody opened must not grow
// the epochs hash. The epoch advances before the latch is removed: if it
// fails (a corrupt field), nothing has changed.
const clearScript = `
local open = redis.call('HGET', KEYS[1], ARGV[1])
if not open then
	return {redis.call('HGET', KEYS[2], ARGV[1]) or '0', false}
end
local ep = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], 'clear ' .. string.format('%d', ep) .. ' ' .. #ARGV[1] .. ':' .. ARGV[1] .. open)
return {ep, open}
`

// clearAllScript clears every open latch.
//
//	KEYS[1] open latches, KEYS[2] epochs
//	ARGV[1] changes channel
//
// It returns a flat list of (scope, new epoch, trip JSON) triples.
const clearAllScript = `
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
	local scope, open = all[i], all[i + 1]
	local ep = redis.call('HINCRBY', KEYS[2], scope, 1)
	redis.call('PUBLISH', ARGV[1], 'clear ' .. string.format('%d', ep) .. ' ' .. #scope .. ':' .. scope .. open)
	out[#out + 1] = scope
	out[#out + 1] = ep
	out[#out + 1] = open
end
redis.call('DEL', KEYS[1])
return out
`

// setModeScript records the fleet's mode at a new mode epoch: the larger of
// the last one plus one and Redis's clock in milliseconds, so that a switch
// made after Redis lost its data still passes every epoch a Transport
// remembers. A corrupt epoch field fails the script (tonumber gives nil)
// and changes nothing.
//
//	KEYS[1] the mode (hash: mode -> "enforce" or "observe", epoch -> decimal)
//	ARGV[1] the mode, ARGV[2] changes channel, ARGV[3] the largest epoch
//
// It returns the new epoch.
const setModeScript = `
if redis.replicate_commands then redis.replicate_commands() end -- TIME, then writes: before Redis 5
local cur = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if cur == nil or cur < 0 or cur >= tonumber(ARGV[3]) then
	return redis.error_reply('mode epoch out of range')
end
local now = redis.call('TIME')
local ep = math.max(cur + 1, tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
ep = math.min(ep, tonumber(ARGV[3]))
local s = string.format('%d', ep)
redis.call('HSET', KEYS[1], 'mode', ARGV[1], 'epoch', s)
redis.call('PUBLISH', ARGV[2], 'mode ' .. s .. ' ' .. ARGV[1])
return s
`

// resetSpendScript zeroes one key's spend in a period and forgets its
// claimed thresholds (set members "<pct>:<key>").
//
//	KEYS[1] the period's spend (hash: key -> micros)
//	KEYS[2] the period's claimed thresholds (set)
//	ARGV[1] budget key
const resetSpendScript = `
redis.call('HDEL', KEYS[1], ARGV[1])
for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
	if string.match(m, '^%-?%d+:(.*)$') == ARGV[1] then
		redis.call('SREM', KEYS[2], m)
	end
end
return 0
`

// addSpendScript adds to one key's spend in a period, at most once per
// write: a retry of a write Redis applied but whose answer was lost finds
// its sequence number recorded and adds nothing.
//
//	KEYS[1] the period's spend (hash: key -> micros)
//	KEYS[2] the period's last applied writes (hash: writer/key -> seq)
//	KEYS[3] the period index (sorted set)
//	ARGV[1] budget key, ARGV[2] micros, ARGV[3] the writer's field ('' for
//	no check), ARGV[4] seq, ARGV[5] expiry (Unix seconds), ARGV[6] period id
//
// It returns the key's total.
const addSpendScript = `
local apply = true
if ARGV[3] ~= '' then
	local last = redis.call('HGET', KEYS[2], ARGV[3])
	if last and tonumber(last) >= tonumber(ARGV[4]) then
		apply = false
	end
end
local total
if apply then
	total = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
	if ARGV[3] ~= '' then
		redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
		redis.call('EXPIREAT', KEYS[2], ARGV[5])
	end
else
	total = redis.call('HGET', KEYS[1], ARGV[1]) or '0'
end
redis.call('EXPIREAT', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[6])
return total
`

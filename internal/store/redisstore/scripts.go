package redisstore

import "github.com/redis/go-redis/v9"

// The scripts get the key prefix as ARGV[1] and KEYS[1] = prefix.."c" (so a
// cluster client routes them to the namespace's slot); they build the other
// key names themselves. All of a namespace's keys share one hash tag, so
// they live in that slot. Index members are hex16(ts)..gid (see member), so
// the byte order of members is (ts, gid) order; a record hash keeps its own
// members (ck, fk) so that a rewrite can remove them.
//
// A record is returned as 9 values: gid mode status fin c u owner ver data.

// commitScript checks the expected version of every versioned record, and
// only when all match writes every record and moves its index entries.
// Per record ARGV holds 13 values: gid vmode expect mode status fin c u
// owner ver data ck fk, where vmode is "0" (unconditional), "1" (must not
// exist) or "n" (stored ver must equal expect).
var commitScript = redis.NewScript(`
local p = ARGV[1]
local n = tonumber(ARGV[2])
local F = 13
local conflicts = {}
for i = 0, n - 1 do
  local b = 3 + i * F
  local vm = ARGV[b + 1]
  if vm ~= '0' then
    local cur = redis.call('HGET', p .. 'r:' .. ARGV[b], 'ver')
    if (vm == '1' and cur) or (vm == 'n' and cur ~= ARGV[b + 2]) then
      conflicts[#conflicts + 1] = ARGV[b]
    end
  end
end
if #conflicts > 0 then
  table.insert(conflicts, 1, 'conflict')
  return conflicts
end
for i = 0, n - 1 do
  local b = 3 + i * F
  local gid, mode, status, fin, ck, fk = ARGV[b], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 11], ARGV[b + 12]
  local rk = p .. 'r:' .. gid
  local old = redis.call('HMGET', rk, 'status', 'mode', 'fin', 'ck', 'fk')
  if old[4] then
    redis.call('ZREM', p .. 'c', old[4])
    if old[1] ~= '' then redis.call('ZREM', p .. 's:' .. old[1], old[4]) end
    if old[2] ~= '' then redis.call('ZREM', p .. 'm:' .. old[2], old[4]) end
    if old[3] == '1' then redis.call('ZREM', p .. 'f', old[5]) else redis.call('ZREM', p .. 'u', gid) end
  end
  redis.call('HSET', rk, 'mode', mode, 'status', status, 'fin', fin, 'c', ARGV[b + 6], 'u', ARGV[b + 7],
    'owner', ARGV[b + 8], 'ver', ARGV[b + 9], 'data', ARGV[b + 10], 'ck', ck, 'fk', fk)
  redis.call('ZADD', p .. 'c', 0, ck)
  if status ~= '' then redis.call('ZADD', p .. 's:' .. status, 0, ck) end
  if mode ~= '' then redis.call('ZADD', p .. 'm:' .. mode, 0, ck) end
  if fin == '1' then redis.call('ZADD', p .. 'f', 0, fk) else redis.call('ZADD', p .. 'u', 0, gid) end
end
return {'ok'}
`)

// fetch is the Lua helper that appends the record gid to out.
const fetch = `
local function fetch(p, gid, out)
  local r = redis.call('HMGET', p .. 'r:' .. gid, 'mode', 'status', 'fin', 'c', 'u', 'owner', 'ver', 'data')
  if not r[3] then return false end
  out[#out + 1] = gid
  for k = 1, 8 do out[#out + 1] = r[k] end
  return r
end
`

// listScript walks one index (ARGV[2]) backwards from the lex bound
// ARGV[3], keeping records whose gid starts with ARGV[4] and whose status
// and mode match ARGV[5] and ARGV[6] when set, up to ARGV[7] records.
var listScript = redis.NewScript(fetch + `
local p, idx, hi, pre, st, md, limit = ARGV[1], ARGV[1] .. ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local out, count = {}, 0
while count < limit do
  local ms = redis.call('ZREVRANGEBYLEX', idx, hi, '-', 'LIMIT', 0, 256)
  if #ms == 0 then break end
  for _, m in ipairs(ms) do
    local gid = string.sub(m, 17)
    if string.sub(gid, 1, #pre) == pre then
      local r = redis.call('HMGET', p .. 'r:' .. gid, 'mode', 'status')
      if (st == '' or r[2] == st) and (md == '' or r[1] == md) then
        fetch(p, gid, out)
        count = count + 1
        if count >= limit then break end
      end
    end
  end
  hi = '(' .. ms[#ms]
end
return out
`)

// unfinishedScript returns up to ARGV[3] unfinished records with gids after
// the lex bound ARGV[2].
var unfinishedScript = redis.NewScript(fetch + `
local p, out = ARGV[1], {}
for _, gid in ipairs(redis.call('ZRANGEBYLEX', p .. 'u', ARGV[2], '+', 'LIMIT', 0, tonumber(ARGV[3]))) do
  fetch(p, gid, out)
end
return out
`)

// deleteScript deletes up to ARGV[3] finished records whose 'f' member is
// below the lex bound ARGV[2] and returns how many.
var deleteScript = redis.NewScript(`
local p = ARGV[1]
local ms = redis.call('ZRANGEBYLEX', p .. 'f', '-', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(ms) do
  local gid = string.sub(m, 17)
  local rk = p .. 'r:' .. gid
  local old = redis.call('HMGET', rk, 'status', 'mode', 'ck')
  if old[3] then
    redis.call('ZREM', p .. 'c', old[3])
    if old[1] ~= '' then redis.call('ZREM', p .. 's:' .. old[1], old[3]) end
    if old[2] ~= '' then redis.call('ZREM', p .. 'm:' .. old[2], old[3]) end
  end
  redis.call('ZREM', p .. 'f', m)
  redis.call('DEL', rk)
end
return #ms
`)

// claimScript gives instance ARGV[2] up to ARGV[3] unfinished records whose
// owner is neither ARGV[2] nor holds a lease key (p..'l:'..owner), which
// expire by Redis's clock.
var claimScript = redis.NewScript(fetch + `
local p, me, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out, count, lo = {}, 0, '-'
while count < limit do
  local gids = redis.call('ZRANGEBYLEX', p .. 'u', lo, '+', 'LIMIT', 0, 256)
  if #gids == 0 then break end
  for _, gid in ipairs(gids) do
    local rk = p .. 'r:' .. gid
    local owner = redis.call('HGET', rk, 'owner')
    if owner and owner ~= me and (owner == '' or redis.call('EXISTS', p .. 'l:' .. owner) == 0) then
      redis.call('HSET', rk, 'owner', me)
      redis.call('HINCRBY', rk, 'ver', 1)
      fetch(p, gid, out)
      count = count + 1
      if count >= limit then break end
    end
  end
  lo = '(' .. gids[#gids]
end
return out
`)

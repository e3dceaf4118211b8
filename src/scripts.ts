/**
 * Every Lua script sluice runs, in one place. ioredis sends them by SHA (EVALSHA) and falls
 * back to EVAL on NOSCRIPT, so a Redis restart or SCRIPT FLUSH is harmless.
 *
 * Each script names every key it touches in KEYS, and all of a queue's keys share one hash
 * tag, so the scripts are Redis Cluster safe.
 *
 * Fencing: a delivery is owned by (consumer, delivery count). A script acts on an entry only if
 * the group's pending entry still names that consumer with that count; otherwise it changes
 * nothing and reports the lease as lost.
 *
 * @module
 */
import type { Redis } from "ioredis";

/** Shared Lua: ownership check, TIME in ms, and entry re-adding. */
const PRELUDE = `
local function owned(stream, group, id, consumer, deliveries)
  local ok, p = pcall(redis.call, 'XPENDING', stream, group, id, id, 1)
  if not ok then return false end
  local e = p[1]
  return e ~= nil and e[2] == consumer and e[4] == tonumber(deliveries)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fields_of(stream, id)
  local r = redis.call('XRANGE', stream, id, id)
  if r[1] == nil then return nil end
  return r[1][2]
end
local function bump(f)
  for i = 1, #f, 2 do
    if f[i] == 'attempt' then f[i + 1] = tostring((tonumber(f[i + 1]) or 0) + 1) break end
  end
  return f
end
local function field(f, name)
  for i = 1, #f, 2 do if f[i] == name then return f[i + 1] end end
  return nil
end
-- Puts an entry on the delayed zset, due \`wait\` ms after \`now\`, and tells sleeping workers.
local function schedule(delayed, payloads, channel, f, now, wait)
  local id = field(f, 'id') or ''
  redis.call('ZADD', delayed, now + wait, id)
  redis.call('HSET', payloads, id, cjson.encode(f))
  redis.call('PUBLISH', channel, tostring(wait))
  return 1
end
-- Re-adds an entry at the tail (attempt + 1 if asked), then acks and deletes the old one.
local function readd(stream, group, id, again)
  local f = fields_of(stream, id)
  if f ~= nil then
    if again > 0 then bump(f) end
    redis.call('XADD', stream, '*', unpack(f))
  end
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  return f ~= nil
end
local function bury(stream, dead, group, id, fields, err, reason, now)
  local f = fields or {'id', id}
  f[#f + 1] = 'error'; f[#f + 1] = err
  f[#f + 1] = 'reason'; f[#f + 1] = reason
  f[#f + 1] = 'failed_at'; f[#f + 1] = tostring(now)
  redis.call('XADD', dead, '*', unpack(f))
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
end
`;

/**
 * Settles a batch of deliveries. KEYS: stream, dead, delayed, payloads. ARGV: group, wake
 * channel, then 6 values per operation: op, entry id, consumer, deliveries, a, b.
 *   ack               a, b unused
 *   retry             a = delay ms: attempt + 1, re-added now (0) or scheduled on the delayed
 *                     zset, due at Redis TIME + delay
 *   release           re-add unchanged (no attempt charged)
 *   dead              a = error text, b = reason
 * Returns one code per operation: 1 done, 0 lease lost (nothing changed), 2 done but the
 * entry had been trimmed away.
 */
const SETTLE = PRELUDE + `
local stream, dead, delayed, payloads = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, channel = ARGV[1], ARGV[2]
local out, now = {}, nil
for i = 3, #ARGV, 6 do
  local op, id, consumer, deliveries = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if not owned(stream, group, id, consumer, deliveries) then
    out[#out + 1] = 0
  elseif op == 'ack' then
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    out[#out + 1] = 1
  elseif op == 'retry' and tonumber(ARGV[i + 4]) > 0 then
    now = now or now_ms()
    local f = fields_of(stream, id)
    if f ~= nil then
      out[#out + 1] = schedule(delayed, payloads, channel, bump(f), now, tonumber(ARGV[i + 4]))
    else
      out[#out + 1] = 2
    end
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
  elseif op == 'retry' or op == 'release' then
    out[#out + 1] = readd(stream, group, id, op == 'retry' and 1 or 0) and 1 or 2
  elseif op == 'dead' then
    now = now or now_ms()
    local f = fields_of(stream, id)
    bury(stream, dead, group, id, f, ARGV[i + 4], ARGV[i + 5], now)
    out[#out + 1] = f and 1 or 2
  else
    return redis.error_reply('sluice: unknown settle op ' .. tostring(op))
  end
end
return out
`;

/**
 * Renews leases and the worker's heartbeat. KEYS: stream, workers. ARGV: group, consumer,
 * heartbeat ttl ms, then pairs of entry id, deliveries. Resets the idle time of every entry
 * still owned (XCLAIM JUSTID does not bump the delivery count). Returns the ids no longer owned.
 */
const RENEW = PRELUDE + `
local stream, workers, group, consumer = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local lost = {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local kept = false
  if owned(stream, group, id, consumer, ARGV[i + 1]) then
    kept = #redis.call('XCLAIM', stream, group, consumer, 0, id, 'JUSTID') == 1
  end
  if not kept then lost[#lost + 1] = id end
end
redis.call('ZADD', workers, now_ms() + tonumber(ARGV[3]), consumer)
return lost
`;

/**
 * Claims idle deliveries with XAUTOCLAIM, following the caller's cursor. KEYS: stream, dead,
 * workers. ARGV: group, consumer, min idle ms, cursor, count, max deliveries, prune (0/1).
 * Entries delivered more than max deliveries times are dead-lettered with reason
 * `delivery-limit`. With prune, consumers with nothing pending and no live heartbeat are
 * deleted. Returns { next cursor, { id, deliveries, fields }..., deleted ids, dead count }.
 */
const RECLAIM = PRELUDE + `
local stream, dead, workers = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, min_idle = ARGV[1], ARGV[2], tonumber(ARGV[3])
local max_deliveries = tonumber(ARGV[6])
local now = now_ms()
local r = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle, ARGV[4], 'COUNT', ARGV[5])
local claimed, deleted, buried = {}, r[3] or {}, 0
for _, e in ipairs(r[2]) do
  local id, fields = e[1], e[2]
  if not fields then
    -- Redis 6.2 returns trimmed entries with nil fields instead of listing them in r[3].
    redis.call('XACK', stream, group, id)
    deleted[#deleted + 1] = id
  else
    local n = redis.call('XPENDING', stream, group, id, id, 1)[1][4]
    if n > max_deliveries then
      bury(stream, dead, group, id, fields,
        'delivered ' .. n .. ' times, more than maxDeliveries ' .. ARGV[6], 'delivery-limit', now)
      buried = buried + 1
    else
      claimed[#claimed + 1] = {id, n, fields}
    end
  end
end
if ARGV[7] == '1' then
  redis.call('ZREMRANGEBYSCORE', workers, '-inf', now)
  local consumers = redis.call('XINFO', 'CONSUMERS', stream, group)
  for _, c in ipairs(consumers) do
    local info = {}
    for j = 1, #c, 2 do info[c[j]] = c[j + 1] end
    if info['pending'] == 0 and info['idle'] > min_idle and info['name'] ~= consumer
      and not redis.call('ZSCORE', workers, info['name']) then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, info['name'])
    end
  end
end
return {r[1], claimed, deleted, buried}
`;

/**
 * Gives back everything a consumer still has pending and removes the consumer. KEYS: stream,
 * workers. ARGV: group, consumer. Each entry is re-added unchanged (no attempt charged), so a
 * waiting peer gets it at once. Returns the number of entries released.
 */
const RETIRE = PRELUDE + `
local stream, workers, group, consumer = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local released = 0
while true do
  local ok, p = pcall(redis.call, 'XPENDING', stream, group, '-', '+', 100, consumer)
  if not ok then break end
  for _, e in ipairs(p) do
    readd(stream, group, e[1], 0)
    released = released + 1
  end
  if #p < 100 then break end
end
pcall(redis.call, 'XGROUP', 'DELCONSUMER', stream, group, consumer)
redis.call('ZREM', workers, consumer)
return released
`;

/**
 * Enqueues one delayed job. KEYS: delayed, payloads. ARGV: wake channel, mode ('delay' or
 * 'at'), ms, then the entry's fields. With 'delay' the job is due `ms` after Redis TIME, so
 * producer clocks do not matter; with 'at' it is due at epoch ms. Returns the due time.
 */
const SCHEDULE = PRELUDE + `
local now = now_ms()
local due = tonumber(ARGV[3])
if ARGV[2] == 'delay' then due = now + due end
local f = {}
for i = 4, #ARGV do f[#f + 1] = ARGV[i] end
schedule(KEYS[1], KEYS[2], ARGV[1], f, now, math.max(0, due - now))
return due
`;

/**
 * Moves due delayed jobs to the stream, at most ARGV[1] of them, exactly once however many
 * workers race (ZRANGEBYSCORE and ZREM in one script, against Redis TIME). KEYS: stream,
 * delayed, payloads. Returns { promoted, ms until the next one is due (-1 if none) }.
 */
const PROMOTE = PRELUDE + `
local stream, delayed, payloads = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(due) do
  local payload = redis.call('HGET', payloads, id)
  if payload then
    local ok, f = pcall(cjson.decode, payload)
    if ok and type(f) == 'table' and #f > 0 then
      redis.call('XADD', stream, '*', unpack(f))
    end
    redis.call('HDEL', payloads, id)
  end
  redis.call('ZREM', delayed, id)
end
local next = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local wait = -1
if next[2] then wait = math.max(0, tonumber(next[2]) - now) end
return {#due, wait}
`;

/** A Redis client with sluice's scripts defined on it. */
export interface ScriptClient extends Redis {
  sluiceSettle(
    stream: string,
    dead: string,
    delayed: string,
    payloads: string,
    ...args: string[]
  ): Promise<number[]>;
  sluiceSchedule(delayed: string, payloads: string, ...args: string[]): Promise<number>;
  sluicePromote(
    stream: string,
    delayed: string,
    payloads: string,
    limit: string,
  ): Promise<[number, number]>;
  sluiceRenew(stream: string, workers: string, ...args: string[]): Promise<string[]>;
  sluiceReclaim(
    stream: string,
    dead: string,
    workers: string,
    ...args: string[]
  ): Promise<[string, [string, number, string[]][], string[], number]>;
  sluiceRetire(stream: string, workers: string, group: string, consumer: string): Promise<number>;
}

/** Defines every script on `client` (by SHA, with EVAL fallback) and returns it. */
export function defineScripts(client: Redis): ScriptClient {
  client.defineCommand("sluiceSettle", { numberOfKeys: 4, lua: SETTLE });
  client.defineCommand("sluiceSchedule", { numberOfKeys: 2, lua: SCHEDULE });
  client.defineCommand("sluicePromote", { numberOfKeys: 3, lua: PROMOTE });
  client.defineCommand("sluiceRenew", { numberOfKeys: 2, lua: RENEW });
  client.defineCommand("sluiceReclaim", { numberOfKeys: 3, lua: RECLAIM });
  client.defineCommand("sluiceRetire", { numberOfKeys: 2, lua: RETIRE });
  return client as ScriptClient;
}

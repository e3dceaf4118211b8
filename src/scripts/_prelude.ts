/**
 * The Lua helpers every sluice script starts with, and the view of a queue the argument builders
 * take.
 *
 * @module
 */
import type { Keys } from "../keys.ts";

/** What the argument builders need to know of a queue: a `QueueContext` is one. */
export interface ScriptQueue {
  /** The queue's keys. */
  readonly keys: Keys;
  /** The consumer group. */
  readonly group: string;
  /** How long (ms) finished jobs' records are kept; 0 keeps none. */
  readonly keepResult: number;
  /** The most dead letters kept; 0 is unbounded. */
  readonly maxDead: number;
  /**
   * The priority of `keys.stream` when it is not the queue's lowest (a lane's view of the
   * queue, see `laneViews`): what SETTLE writes in field `pri` of a job it moves off the stream.
   */
  readonly pri?: string;
  /** The events stream's cap, about how many events it keeps; 0 or undefined: no events. */
  readonly events?: number;
}

/** The prelude's first line on a single Redis: scripts publish with PUBLISH. */
export const SHARDED_OFF = "local SHARDED = false";
/** The same line on Redis Cluster (see `defineScripts`): scripts publish with SPUBLISH. */
export const SHARDED_ON = "local SHARDED = true";

/**
 * Shared Lua: the ownership check, TIME in ms, reading and re-adding entries, burying, and
 * finish(), which ends a job's record and announces its outcome.
 *
 * Fencing: a delivery is owned by (consumer, delivery count). A script acts on an entry only if
 * the group's pending entry still names that consumer with that count; otherwise it changes
 * nothing and reports the lease as lost.
 */
export const PRELUDE = `
${SHARDED_OFF}
-- Publishes on the channel's shard on Redis Cluster (SPUBLISH), else to every subscriber.
local function publish(channel, message)
  redis.call(SHARDED and 'SPUBLISH' or 'PUBLISH', channel, message)
end
-- True if a pattern subscription may hear anything (sharded pub/sub has no patterns).
local function patterns()
  return not SHARDED and redis.call('PUBSUB', 'NUMPAT') > 0
end
local function owned(stream, group, id, consumer, deliveries)
  local ok, p = pcall(redis.call, 'XPENDING', stream, group, id, id, 1)
  if not ok then return false end
  local e = p[1]
  return e ~= nil and e[2] == consumer and e[4] == tonumber(deliveries)
end
local function id_ms(id)
  return tonumber(string.match(id, '^(%d+)')) or 0
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
-- Sets field pri of entry fields \`f\` to \`pri\`, or removes it if \`pri\` is '' (the lowest).
local function with_pri(f, pri)
  for i = 1, #f, 2 do
    if f[i] == 'pri' then
      if pri == '' then
        table.remove(f, i)
        table.remove(f, i)
      else
        f[i + 1] = pri
      end
      return f
    end
  end
  if pri ~= '' then
    f[#f + 1] = 'pri'
    f[#f + 1] = pri
  end
  return f
end
-- Puts an entry on the delayed zset, due \`wait\` ms after \`now\`, and tells sleeping workers.
local function schedule(delayed, payloads, channel, f, now, wait)
  local id = field(f, 'id') or ''
  redis.call('ZADD', delayed, now + wait, id)
  redis.call('HSET', payloads, id, cjson.encode(f))
  publish(channel, tostring(wait))
  return 1
end
-- Re-adds an entry at the tail (attempt + 1 if asked), then acks and deletes the old one.
-- Returns the new entry id and the fields, or nil if the entry had been trimmed away.
local function readd(stream, group, id, again)
  local f = fields_of(stream, id)
  local new = nil
  if f ~= nil then
    if again > 0 then bump(f) end
    new = redis.call('XADD', stream, '*', unpack(f))
  end
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  return new, f
end
local function bury(stream, dead, group, id, fields, err, reason, now, max_dead)
  local f = fields or {'entry', id}
  f[#f + 1] = 'error'; f[#f + 1] = err
  f[#f + 1] = 'reason'; f[#f + 1] = reason
  f[#f + 1] = 'failed_at'; f[#f + 1] = tostring(now)
  if max_dead and max_dead > 0 then
    redis.call('XADD', dead, 'MAXLEN', max_dead, '*', unpack(f))
  else
    redis.call('XADD', dead, '*', unpack(f))
  end
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
end
-- A job reached its end: record the outcome for \`keep\` ms (or drop the record), and tell
-- anyone awaiting its result. The message carries the outcome, so it arrives even with keep 0:
-- state, reason and result JSON (or error text), one per line. \`clean\`: the record may hold
-- an earlier attempt's error, to drop (a first attempt's never does).
local drop = nil -- when a table, finish() collects records to delete instead of deleting them
-- When a table, finish() collects its outcomes (channel, state, reason, body, flat) for
-- announce(), which publishes only those someone listens to.
local later = nil
-- When true, finish() announces nothing: nobody awaits a result (see announce()).
local silent = false
-- Numbers handed to redis.call are formatted on every call (about 0.3 µs each): stamp() formats
-- now, and the time a kept record expires, once per script run instead.
local keep_n, now_n, now_s, until_s = nil, nil, nil, nil
-- Events (see events.ts): while EV is a table, scripts collect the events of their call in it
-- (ev()), and ev_flush() writes them as one entry of the events stream, capped at about
-- EV_MAX events. Events that share their head "<type> <task>[ <detail>]" share a field: its
-- value is the JSON array of their job ids, in order; heads keep the order they first came in.
local EV, EV_HEADS, EV_N, EV_KEY, EV_MAX, EV_SKIP = nil, nil, 0, nil, 0, 1
-- The webhook deliveries the call enqueued: their waiting events come after all the others,
-- after the ends they report.
local EV_HOOKS = {}
-- The task finish() names in its event: set by a caller that knows it, else read off the record.
local EV_TASK = nil
-- Turns events on for this call if max (ARGV text) is a positive number.
local function ev_on(key, max, prefix)
  local n = tonumber(max)
  if n and n > 0 then EV, EV_HEADS, EV_KEY, EV_MAX, EV_SKIP = {}, {}, key, n, #prefix + 1 end
end
local function ev(head, id)
  local ids = EV[head]
  if not ids then
    ids = {}
    EV[head] = ids
    EV_HEADS[#EV_HEADS + 1] = head
  end
  ids[#ids + 1] = id
  EV_N = EV_N + 1
end
-- Events whose ids the caller sent as a JSON array of n ids (built by the client, where it
-- costs next to nothing), less those in \`drop\` (id -> how many of its events to drop, or
-- nil): one field for all.
local function ev_batch(head, json, n, drop)
  if n == 0 then return end
  if drop then
    for _, id in ipairs(cjson.decode(json)) do
      local k = drop[id]
      if k and k > 0 then drop[id] = k - 1 else ev(head, id) end
    end
    return
  end
  local key = '#' .. head -- a field of its own, beside the ids collected one by one
  EV[key] = json
  EV_HEADS[#EV_HEADS + 1] = key
  EV_N = EV_N + n
end
local function ev_flush()
  if not EV or EV_N == 0 then return end
  local f = {}
  for i, head in ipairs(EV_HEADS) do
    local v = EV[head]
    if type(v) == 'string' then
      f[2 * i - 1], f[2 * i] = string.sub(head, 2), v
    else
      f[2 * i - 1], f[2 * i] = head, cjson.encode(v)
    end
  end
  if #EV_HOOKS > 0 then
    f[#f + 1], f[#f + 2] = 'waiting sluice.webhook', cjson.encode(EV_HOOKS)
    EV_HOOKS = {}
  end
  -- About EV_MAX events in all: an entry of n events counts n.
  redis.call('XADD', EV_KEY, 'MAXLEN', '~', math.max(1, math.floor(EV_MAX / EV_N)), '*', unpack(f))
  EV, EV_HEADS, EV_N = {}, {}, 0
end
-- Webhooks (see webhook.ts): a job whose entry fields \`f\` name a webhook gets, at its end, a
-- delivery job in stream \`target\`: task sluice.webhook, data {url, body, job}, where body is
-- the JSON to POST (\`detail\` holds its result or error members, with leading commas) and job
-- the entry's fields, so that a worker can check the URL against the job's signature.
local function hook(target, f, state, detail, now)
  local url = field(f, 'webhook')
  if not url then return end
  local id, task = field(f, 'id') or '', field(f, 'task') or ''
  local body = '{"id":' .. cjson.encode(id) .. ',"task":' .. cjson.encode(task) .. ',"state":"' ..
    state .. '"' .. detail .. ',"finishedAt":' .. string.format('%d', now) .. '}'
  local hid = 'webhook:' .. redis.sha1hex(id .. ' ' .. state .. ' ' .. tostring(now))
  local data = cjson.encode({url = url, body = body, job = f})
  redis.call('XADD', target, '*', 'v', '1', 'id', hid, 'task', 'sluice.webhook', 'data', data,
    'attempt', '1', 'enq', string.format('%d', now))
  if EV then
    EV_HOOKS[#EV_HOOKS + 1] = hid
    EV_N = EV_N + 1
  end
end
-- Counts, in hash \`key\`, the jobs that completed and failed (retried or dead) in the minute
-- of \`now\`: a ring of 64 minutes, fields m<slot> (the minute, ms / 60000), c<slot> and
-- f<slot>, slot = minute % 64. Two or three calls per script run, whatever its size; the
-- dashboard's sparklines read it (the events stream is capped, so it cannot tell an hour).
local function tally(key, now, done, failed)
  if done + failed == 0 then return end
  local m = math.floor(now / 60000)
  local slot = tostring(m % 64)
  if redis.call('HGET', key, 'm' .. slot) ~= tostring(m) then
    redis.call('HSET', key, 'm' .. slot, tostring(m), 'c' .. slot, done, 'f' .. slot, failed)
    return
  end
  if done > 0 then redis.call('HINCRBY', key, 'c' .. slot, done) end
  if failed > 0 then redis.call('HINCRBY', key, 'f' .. slot, failed) end
end
-- The task of a job's record (field job is "<enq> <task>"), for an event.
local function rec_task(rec)
  local r = redis.call('HMGET', rec, 'job', 'task')
  return r[1] and string.match(r[1], ' (.*)$') or r[2] or '?'
end
-- Formats now, and the time a record kept \`keep\` ms expires, into now_s and until_s, once
-- per (keep, now). PEXPIREAT: Redis rewrites a PEXPIRE to it, with a new argument, to propagate.
local function stamp(keep, now)
  if keep ~= keep_n or now ~= now_n then
    keep_n, now_n, now_s = keep, now, tostring(now)
    until_s = string.format('%d', now + keep)
  end
end
local function finish(rec, keep, now, channel, state, body, reason, clean, ...)
  if EV then
    -- '?': the caller does not know the task (an entry that could not be decoded).
    local task = EV_TASK
    if not task or task == '?' then task = rec_task(rec) end
    local head = state .. ' ' .. task
    if state == 'dead' then head = head .. ' ' .. reason end
    ev(head, string.sub(rec, EV_SKIP))
  end
  local kept = false
  stamp(keep, now)
  now = now_s
  if keep > 0 then
    -- At maxmemory (noeviction) Redis refuses the HSET: the job still ends, without its
    -- record, so workers drain a full Redis instead of failing every ack.
    if state == 'completed' or state == 'cancelled' then
      kept = pcall(redis.call, 'HSET', rec, 'state', state, 'finished', now, 'result', body, ...)
      if kept and clean then redis.call('HDEL', rec, 'error', 'reason', 'due') end
    else
      kept = pcall(redis.call, 'HSET', rec, 'state', state, 'finished', now, 'error', body,
        'reason', reason, ...)
    end
    if kept then redis.call('PEXPIREAT', rec, until_s) end
  end
  if not kept and drop then
    drop[#drop + 1] = rec
  elseif not kept then
    redis.call('DEL', rec)
  end
  if silent then
    return
  elseif later then
    local n = #later
    later[n + 1], later[n + 2], later[n + 3], later[n + 4] = channel, state, reason, body
  else
    publish(channel, state .. '\\n' .. reason .. '\\n' .. body)
  end
end
-- Publishes the outcomes finish() collected to the channels someone listens to: one PUBSUB
-- NUMSUB per 500 outcomes, and a PUBLISH only where a result() waits (or to all, while any
-- pattern subscription exists on the server: NUMSUB does not count those). A waiter subscribes
-- before it reads the record, so it either hears the outcome or finds it recorded.
local function announce()
  if #later == 0 then return end
  local all = patterns()
  for i = 1, #later, 2000 do
    local last = math.min(i + 1999, #later)
    local channels = {}
    for j = i, last, 4 do channels[#channels + 1] = later[j] end
    local counts = redis.call('PUBSUB', SHARDED and 'SHARDNUMSUB' or 'NUMSUB', unpack(channels))
    for c = 2, #counts, 2 do
      if all or counts[c] > 0 then
        local j = i + (c - 2) * 2
        publish(later[j], later[j + 1] .. '\\n' .. later[j + 2] .. '\\n' .. later[j + 3])
      end
    end
  end
end
`;

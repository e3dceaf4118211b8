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
-- Puts an entry on the delayed zset, due \`wait\` ms after \`now\`, and tells sleeping workers.
local function schedule(delayed, payloads, channel, f, now, wait)
  local id = field(f, 'id') or ''
  redis.call('ZADD', delayed, now + wait, id)
  redis.call('HSET', payloads, id, cjson.encode(f))
  redis.call('PUBLISH', channel, tostring(wait))
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
-- state, reason and result JSON (or error text), one per line.
local drop = nil -- when a table, finish() collects records to delete instead of deleting them
local later = nil -- when a table, finish() collects its messages to publish at the very end
local function finish(rec, keep, now, channel, state, body, reason, ...)
  local kept = false
  if keep > 0 then
    -- At maxmemory (noeviction) Redis refuses the HSET: the job still ends, without its
    -- record, so workers drain a full Redis instead of failing every ack.
    if state == 'completed' or state == 'cancelled' then
      kept = pcall(redis.call, 'HSET', rec, 'state', state, 'finished', now, 'result', body, ...)
      if kept then redis.call('HDEL', rec, 'error', 'reason', 'due') end
    else
      kept = pcall(redis.call, 'HSET', rec, 'state', state, 'finished', now, 'error', body,
        'reason', reason, ...)
    end
    if kept then redis.call('PEXPIRE', rec, keep) end
  end
  if not kept and drop then
    drop[#drop + 1] = rec
  elseif not kept then
    redis.call('DEL', rec)
  end
  local message = state .. '\\n' .. reason .. '\\n' .. body
  if later then
    later[#later + 1] = {channel, message}
  else
    redis.call('PUBLISH', channel, message)
  end
end
`;

/**
 * Settles a batch of deliveries and keeps each job's record in step. KEYS: stream, dead,
 * delayed, payloads, then one job record key per operation. ARGV: group, wake channel, done
 * channel prefix, keep ms (0: keep no record), live ms (record TTL while a job is pending),
 * max dead (0: unbounded), consumer, record key prefix, the batch's lowest and highest entry ids,
 * then 5 values per operation: op, entry id, deliveries, a, b (the job id is the record key minus
 * the prefix).
 *   ack      a = result JSON ('' for none), b = start time ms
 *   cancel   acked without running to the end: record cancelled; b = start time or ''
 *   retry    a = delay ms, b = error: attempt + 1, re-added now (0) or scheduled on the
 *            delayed zset, due at Redis TIME + delay
 *   release  re-added unchanged (no attempt charged)
 *   dead     a = error text, b = reason
 * Returns one code per operation: 1 done, 0 lease lost (nothing changed), 2 done but the entry
 * had been trimmed away, 3 refused by Redis for memory (nothing changed; try again). Outcome
 * messages are published last, once everything has landed.
 *
 * Fencing looks at the batch in one XPENDING: the consumer's deliveries between the batch's
 * lowest and highest entry ids. The next read is not made here but pipelined right after this
 * call by the consumer: a read made in Lua costs Redis about three times as much, because its
 * reply is turned into Lua tables and back.
 *
 * Finished entries leave the stream by trimming, not one by one: XDEL costs Redis about 20
 * times what XTRIM MINID ~ does per entry. Everything older than the oldest pending delivery
 * is done, so the stream is trimmed up to it. An acked entry more than TRIM_SLACK_MS of stream
 * time newer than that oldest delivery (a long job holds the trim point back) is deleted
 * at once instead, so a slow job keeps at most TRIM_SLACK_MS worth of finished entries.
 */
const SETTLE = PRELUDE + `
local TRIM_SLACK_MS = 5000
local stream, dead, delayed, payloads = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, channel, done = ARGV[1], ARGV[2], ARGV[3]
local keep, live, max_dead = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local consumer, skip, low, high = ARGV[7], #ARGV[8] + 1, ARGV[9], ARGV[10]
local out, now = {}, now_ms()
local done_ids = {}
drop, later = {}, {}
-- Fencing: one XPENDING for the whole batch, over the consumer's own deliveries between the
-- batch's lowest and highest entry ids. If that range holds many more of ours than the batch
-- (a long-running job in the middle), it falls back to one XPENDING per job.
local mine = nil
local ops = (#ARGV - 10) / 5
if ops > 0 then
  local most = 4 * ops + 16
  local ok, p = pcall(redis.call, 'XPENDING', stream, group, low, high, most + 1, consumer)
  if ok and #p <= most then
    mine = {}
    for _, e in ipairs(p) do mine[e[1]] = e[4] end
  end
end
-- Retry, release and dead: returns the operation's code.
local function other(op, entry, rec, id, a, b)
  if op == 'retry' and tonumber(a) > 0 then
    local f = fields_of(stream, entry)
    local code = 2
    if f ~= nil then
      schedule(delayed, payloads, channel, bump(f), now, tonumber(a))
      redis.call('HSET', rec, 'state', 'retrying', 'attempt', field(f, 'attempt'),
        'due', now + tonumber(a), 'error', b)
      redis.call('HDEL', rec, 'entry')
      redis.call('PEXPIRE', rec, live + tonumber(a))
      code = 1
    end
    redis.call('XACK', stream, group, entry)
    redis.call('XDEL', stream, entry)
    return code
  elseif op == 'retry' or op == 'release' then
    local again = op == 'retry' and 1 or 0
    local new, f = readd(stream, group, entry, again)
    if new then
      redis.call('HSET', rec, 'state', 'waiting', 'entry', new, 'attempt', field(f, 'attempt'))
      if again == 1 then redis.call('HSET', rec, 'error', b) end
      redis.call('PEXPIRE', rec, live)
    end
    return new and 1 or 2
  elseif op == 'dead' then
    local f = fields_of(stream, entry)
    bury(stream, dead, group, entry, f, a, b, now, max_dead)
    finish(rec, keep, now, done .. id, 'dead', a, b)
    return f and 1 or 2
  end
  error('sluice: unknown settle op ' .. tostring(op))
end
-- Trims finished entries: up to the oldest pending delivery (whole nodes), exactly up to the
-- last delivered entry once nothing is pending, and deletes acked entries far past a pinned
-- trim point one by one.
local function trim(stream, group, acked, newest)
  local pending = redis.call('XPENDING', stream, group)
  if pending[1] == 0 then
    -- The group has caught up (rare under load): everything it delivered is done. Trim up to
    -- the first entry after the last delivered one, or everything if there is none.
    local last = nil
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
      if field(g, 'name') == group then last = field(g, 'last-delivered-id') end
    end
    if not last then return end
    local after = redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', 1)
    if after[1] then
      redis.call('XTRIM', stream, 'MINID', after[1][1])
    else
      redis.call('XTRIM', stream, 'MAXLEN', 0)
    end
    return
  end
  local oldest = pending[2]
  redis.call('XTRIM', stream, 'MINID', '~', oldest)
  local limit = id_ms(oldest) + TRIM_SLACK_MS
  if id_ms(newest) <= limit then return end
  local far = {}
  for _, entry in ipairs(acked) do
    if id_ms(entry) > limit then far[#far + 1] = entry end
  end
  for i = 1, #far, 500 do
    redis.call('XDEL', stream, unpack(far, i, math.min(i + 499, #far)))
  end
end
local k = 5
for i = 11, #ARGV, 5 do
  local op, entry, deliveries, a, b = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local rec = KEYS[k]
  local id = string.sub(rec, skip)
  k = k + 1
  local ours
  if mine then ours = mine[entry] == tonumber(deliveries)
  else ours = owned(stream, group, entry, consumer, deliveries) end
  if not ours then
    out[#out + 1] = 0
  elseif op == 'ack' or op == 'cancel' then
    -- Acked together after the loop: one XACK per batch.
    done_ids[#done_ids + 1] = entry
    local state = op == 'ack' and 'completed' or 'cancelled'
    finish(rec, keep, now, done .. id, state, a, '', 'started', b, 'worker', consumer,
      'deliveries', deliveries)
    out[#out + 1] = 1
  elseif (op == 'retry' or op == 'release') and redis.call('HGET', rec, 'state') == 'cancelling' then
    -- Cancelled while it ran: it ends here, whatever the worker wanted next.
    done_ids[#done_ids + 1] = entry
    finish(rec, keep, now, done .. id, 'cancelled', '', '', 'worker', consumer)
    out[#out + 1] = 1
  else
    -- At maxmemory Redis refuses the first write that may grow memory; a script that has
    -- not written yet is refused whole. pcall keeps the refusal to this one operation, which
    -- then changed nothing (code 3: the worker tries again), and the batch goes on.
    local ok, code = pcall(function()
      return other(op, entry, rec, id, a, b)
    end)
    if not ok and string.find(tostring(code.err or code), 'OOM', 1, true) then
      out[#out + 1] = 3
    elseif not ok then
      return redis.error_reply(tostring(code.err or code))
    else
      out[#out + 1] = code
    end
  end
end
for i = 1, #drop, 500 do
  redis.call('DEL', unpack(drop, i, math.min(i + 499, #drop)))
end
if #done_ids > 0 then
  for i = 1, #done_ids, 500 do
    redis.call('XACK', stream, group, unpack(done_ids, i, math.min(i + 499, #done_ids)))
  end
  -- Housekeeping never fails a settle: its errors are dropped.
  pcall(trim, stream, group, done_ids, high)
end
for _, m in ipairs(later) do redis.call('PUBLISH', m[1], m[2]) end
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
-- At maxmemory the heartbeat is refused (ZADD may grow memory); the leases above still count.
pcall(redis.call, 'ZADD', workers, now_ms() + tonumber(ARGV[3]), consumer)
return lost
`;

/**
 * Claims idle deliveries with XAUTOCLAIM, following the caller's cursor. KEYS: stream, dead,
 * workers. ARGV: group, consumer, min idle ms, cursor, count, max deliveries, prune (0/1),
 * max dead. Entries delivered more than max deliveries times are dead-lettered with reason
 * `delivery-limit`. With prune, consumers with nothing pending and no live heartbeat are
 * deleted. Returns { next cursor, { id, deliveries, fields }..., deleted ids, dead job ids }.
 * The caller then marks the dead jobs' records (their keys are only known now).
 */
const RECLAIM = PRELUDE + `
local stream, dead, workers = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, min_idle = ARGV[1], ARGV[2], tonumber(ARGV[3])
local max_deliveries = tonumber(ARGV[6])
local now = now_ms()
local r = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle, ARGV[4], 'COUNT', ARGV[5])
local claimed, deleted, buried = {}, r[3] or {}, {}
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
        'delivered ' .. n .. ' times, more than maxDeliveries ' .. ARGV[6], 'delivery-limit', now,
        tonumber(ARGV[8]))
      buried[#buried + 1] = field(fields, 'id') or ''
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
 * workers. ARGV: group, consumer, record key prefix, done channel prefix, keep ms. Each entry is
 * re-added unchanged (no attempt charged), so a waiting peer gets it at once, except a job
 * marked cancelling, which ends cancelled. Returns the number of entries released.
 */
const RETIRE = PRELUDE + `
local stream, workers, group, consumer = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local released = 0
while true do
  local ok, p = pcall(redis.call, 'XPENDING', stream, group, '-', '+', 100, consumer)
  if not ok then break end
  for _, e in ipairs(p) do
    local f = fields_of(stream, e[1])
    local id = f and field(f, 'id')
    local rec = id and (ARGV[3] .. id)
    local state = rec and redis.call('HGET', rec, 'state')
    if state == 'cancelling' then
      -- Cancelled while we held it: it ends here instead of going back to the stream.
      redis.call('XACK', stream, group, e[1])
      redis.call('XDEL', stream, e[1])
      finish(rec, tonumber(ARGV[5]), now_ms(), ARGV[4] .. id, 'cancelled', '', '')
    else
      local new = readd(stream, group, e[1], 0)
      if new and state then redis.call('HSET', rec, 'state', 'waiting', 'entry', new) end
      released = released + 1
    end
  end
  if #p < 100 then break end
end
pcall(redis.call, 'XGROUP', 'DELCONSUMER', stream, group, consumer)
redis.call('ZREM', workers, consumer)
return released
`;

/**
 * Enqueues a batch of jobs, each unless its id is still known (dedup). KEYS: stream, delayed,
 * payloads, then one record per job. ARGV: wake channel, live ms, task, enq, record key prefix,
 * wire version, shape; then per job, if shape is 'plain' (due now, no optional fields), its data
 * alone; else mode ('now', 'delay' or 'at'), ms, n, data, then n values: the job's optional
 * fields as field/value pairs (trace to sig, as encodeExtras in codec.ts lays them out). With
 * 'delay' a job is due `ms` after Redis TIME, so producer clocks do not matter; with 'at' it is
 * due at epoch ms.
 * Returns one value per job: the entry id if written to the stream, the due time if written to
 * the delayed zset, or {entry id or '', due time or 0} if the id was known (a duplicate).
 *
 * The entry's leading fields are the same for the whole batch, bar id (the record key minus the
 * prefix) and data, so the script writes them itself, in the order of encodeFields in codec.ts,
 * and no job carries them: fewer arguments cost less on both sides. No table is built per job.
 */
const ENQUEUE = PRELUDE + `
local stream, delayed, payloads = KEYS[1], KEYS[2], KEYS[3]
local wake, live, task, enq = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local skip, v, plain = #ARGV[5] + 1, ARGV[6], ARGV[7] == 'plain'
local call, sub = redis.call, string.sub
local out, now = {}, now_ms()
-- One expiry time for the batch's waiting records: PEXPIREAT is what PEXPIRE is rewritten to.
local expire_at = now + live
local a = 8
for k = 4, #KEYS do
  local rec = KEYS[k]
  local mode, ms, n, data = 'now', 0, 0, nil
  if plain then
    data = ARGV[a]
    a = a + 1
  else
    mode, ms, n, data = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3]
    a = a + 4 + n
  end
  if call('EXISTS', rec) == 1 then
    local known = call('HMGET', rec, 'entry', 'due')
    out[k - 3] = {known[1] or '', tonumber(known[2] or '0')}
  elseif mode == 'now' then
    local entry = call('XADD', stream, '*', 'v', v, 'id', sub(rec, skip), 'task', task,
      'data', data, 'attempt', '1', 'enq', enq, unpack(ARGV, a - n, a - 1))
    call('HSET', rec, 'state', 'waiting', 'task', task, 'attempt', '1', 'enq', enq,
      'entry', entry)
    call('PEXPIREAT', rec, expire_at)
    out[k - 3] = entry
  else
    local due = ms
    if mode == 'delay' then due = now + ms end
    local wait = math.max(0, due - now)
    local f = {'v', v, 'id', sub(rec, skip), 'task', task, 'data', data, 'attempt', '1',
      'enq', enq, unpack(ARGV, a - n, a - 1)}
    schedule(delayed, payloads, wake, f, now, wait)
    call('HSET', rec, 'state', 'delayed', 'task', task, 'attempt', '1', 'enq', enq, 'due', due)
    call('PEXPIREAT', rec, expire_at + wait)
    out[k - 3] = due
  end
end
return out
`;

/**
 * Marks jobs dead-lettered by a reclaim. KEYS: one record per job. ARGV: done channel prefix,
 * keep ms, then pairs of job id, error.
 */
const MARK_DEAD = PRELUDE + `
local now = now_ms()
for i = 1, #KEYS do
  local id, err = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
  finish(KEYS[i], tonumber(ARGV[2]), now, ARGV[1] .. id, 'dead', err, 'delivery-limit')
end
return #KEYS
`;

/**
 * Cancels a job. KEYS: stream, delayed, payloads, record. ARGV: group, done channel prefix,
 * keep ms, cancel channel, job id. A delayed or retrying job is removed; a waiting job not yet
 * delivered is deleted from the stream; either way it never runs and ends cancelled. A job a
 * worker holds is marked cancelling and its owner told, over pub/sub, to stop it. Returns the
 * state before: the action taken follows from it; 'unknown' if there is no record.
 */
const CANCEL = PRELUDE + `
local stream, delayed, payloads, rec = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, done, keep, id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[5]
local state = redis.call('HGET', rec, 'state')
if not state then return 'unknown' end
if state == 'completed' or state == 'dead' or state == 'cancelled' then return state end
local now = now_ms()
if state == 'delayed' or state == 'retrying' then
  if redis.call('ZREM', delayed, id) == 1 then
    redis.call('HDEL', payloads, id)
    redis.call('HDEL', rec, 'due')
    finish(rec, keep, now, done .. id, 'cancelled', '', '')
    return state
  end
  state = 'waiting' -- promoted meanwhile: look at the stream
end
local entry = redis.call('HGET', rec, 'entry')
if entry then
  local ok, p = pcall(redis.call, 'XPENDING', stream, group, entry, entry, 1)
  if not (ok and p[1]) then
    redis.call('XDEL', stream, entry)
    finish(rec, keep, now, done .. id, 'cancelled', '', '')
    return 'waiting'
  end
end
redis.call('HSET', rec, 'state', 'cancelling')
redis.call('PUBLISH', ARGV[4], id .. '\\n' .. (entry or ''))
return 'active'
`;

/**
 * Moves due delayed jobs to the stream, at most ARGV[1] of them, exactly once however many
 * workers race (ZRANGEBYSCORE and ZREM in one script, against Redis TIME), and points each
 * job's record at its new entry. KEYS: stream, delayed, payloads. ARGV: limit, record key
 * prefix. Returns { promoted, ms until the next one is due (-1 if none) }.
 *
 * The records' keys are only known here, so they are built from the prefix: they share the
 * queue's hash tag, hence its Redis Cluster slot, like every key named in KEYS.
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
      local entry = redis.call('XADD', stream, '*', unpack(f))
      local rec = ARGV[2] .. id
      if redis.call('EXISTS', rec) == 1 then
        redis.call('HSET', rec, 'state', 'waiting', 'entry', entry)
        redis.call('HDEL', rec, 'due')
      end
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

/**
 * Replays dead letters: each goes back to the stream with attempt 1 and leaves the dead
 * stream in the same step, so replaying the same entry twice never runs it twice. KEYS: dead,
 * stream, then one record per dead entry. ARGV: live ms, then the dead entry ids. Returns the
 * number replayed.
 */
const REPLAY = PRELUDE + `
local dead, stream, live = KEYS[1], KEYS[2], tonumber(ARGV[1])
local replayed = 0
for i = 2, #ARGV do
  local r = redis.call('XRANGE', dead, ARGV[i], ARGV[i])
  if r[1] then
    local f, kept = r[1][2], {}
    for j = 1, #f, 2 do
      local name = f[j]
      if name ~= 'error' and name ~= 'reason' and name ~= 'failed_at' then
        kept[#kept + 1] = name
        kept[#kept + 1] = (name == 'attempt') and '1' or f[j + 1]
      end
    end
    local entry = redis.call('XADD', stream, '*', unpack(kept))
    redis.call('XDEL', dead, ARGV[i])
    local rec = KEYS[i + 1]
    redis.call('DEL', rec)
    redis.call('HSET', rec, 'state', 'waiting', 'entry', entry, 'attempt', 1,
      'task', field(kept, 'task') or '', 'enq', field(kept, 'enq') or '')
    redis.call('PEXPIRE', rec, live)
    replayed = replayed + 1
  end
end
return replayed
`;

/**
 * Which of these jobs were cancelled? KEYS: one record per job. Returns the 1-based positions
 * of the records marked cancelling or cancelled (usually none).
 */
const CANCELLED = `
local out = {}
for i = 1, #KEYS do
  local state = redis.call('HGET', KEYS[i], 'state')
  if state == 'cancelling' or state == 'cancelled' then out[#out + 1] = i end
end
return out
`;

/** A Redis client with sluice's scripts defined on it. */
export interface ScriptClient extends Redis {
  sluiceSettle(numKeys: number, ...keysAndArgs: string[]): Promise<number[]>;
  /** One array: the key count, the keys, then the arguments. */
  sluiceEnqueue(keysAndArgs: (number | string)[]): Promise<(string | number | [string, number])[]>;
  sluiceMarkDead(numKeys: number, ...keysAndArgs: string[]): Promise<number>;
  sluiceReplay(numKeys: number, ...keysAndArgs: string[]): Promise<number>;
  sluiceCancelled(numKeys: number, ...keys: string[]): Promise<number[]>;
  sluiceCancel(
    stream: string,
    delayed: string,
    payloads: string,
    record: string,
    ...args: string[]
  ): Promise<string>;
  sluicePromote(
    stream: string,
    delayed: string,
    payloads: string,
    limit: string,
    recordPrefix: string,
  ): Promise<[number, number]>;
  sluiceRenew(stream: string, workers: string, ...args: string[]): Promise<string[]>;
  sluiceReclaim(
    stream: string,
    dead: string,
    workers: string,
    ...args: string[]
  ): Promise<[string, [string, number, string[]][], string[], string[]]>;
  sluiceRetire(
    stream: string,
    workers: string,
    group: string,
    consumer: string,
    recordPrefix: string,
    doneChannelPrefix: string,
    keepMs: string,
  ): Promise<number>;
}

/** Defines every script on `client` (by SHA, with EVAL fallback) and returns it. */
export function defineScripts(client: Redis): ScriptClient {
  // Settle and mark-dead name one record key per job: the key count comes first.
  client.defineCommand("sluiceSettle", { lua: SETTLE });
  client.defineCommand("sluiceEnqueue", { lua: ENQUEUE });
  client.defineCommand("sluiceMarkDead", { lua: MARK_DEAD });
  client.defineCommand("sluiceCancel", { numberOfKeys: 4, lua: CANCEL });
  client.defineCommand("sluiceReplay", { lua: REPLAY });
  client.defineCommand("sluiceCancelled", { lua: CANCELLED });
  client.defineCommand("sluicePromote", { numberOfKeys: 3, lua: PROMOTE });
  client.defineCommand("sluiceRenew", { numberOfKeys: 2, lua: RENEW });
  client.defineCommand("sluiceReclaim", { numberOfKeys: 3, lua: RECLAIM });
  client.defineCommand("sluiceRetire", { numberOfKeys: 2, lua: RETIRE });
  return client as ScriptClient;
}

/**
 * SETTLE: acks, retries, releases and dead-letters a batch of deliveries in one script call,
 * and keeps each job's record in step. `settleArgs` builds its arguments.
 *
 * KEYS: stream, dead, delayed, payloads, waiters, events, the four group keys if ARGV's 12th
 * value is 'g' (see _gate.ts), then the record key of each operation that has one (every
 * operation but `bury`), in order, then with events on the per-minute counts (see `tally`).
 * ARGV: group, wake channel, done channel prefix, keep ms (0: keep no record), live ms (record
 * TTL while a job is pending), max dead (0: unbounded), consumer, record key prefix, the batch's
 * lowest and highest entry ids, the stream's priority name ('' for the lowest: written in
 * field pri of jobs moved to the delayed zset or the dead letters), 'g' if the group keys are
 * given (else ''), the events stream's cap ('' with events off: see events.ts), the entry ids
 * of jobs with a webhook, space-separated ('' for none: each gets a delivery job, task
 * sluice.webhook, in the stream when it completes, dies or is cancelled here), the operations'
 * task with events on (one name if they share it, else each one's, space-separated; '' with
 * events off), the JSON array of the 'ack' operations' job ids and their count (with events on
 * and one task; else '' and 0: their completed events, written as one field), then 5 values
 * per operation: op, entry id, deliveries, a, b (the job id is the record key minus the
 * prefix):
 *   ack      a = result JSON ('' for none), b = "<start ms> <deliveries> <consumer>" (the
 *            record's run field; the start is '' if the job never started)
 *   ack-retried  as ack, for a later attempt: the record's last error is dropped too
 *   cancel   acked without running to the end: record cancelled; a = '', b as for ack
 *   retry    a = delay ms, b = error: attempt + 1, re-added now (0) or scheduled on the
 *            delayed zset, due at Redis TIME + delay
 *   release  re-added unchanged (no attempt charged)
 *   defer    a = due time (ms, Redis's clock), or "+<ms>" from now: scheduled on the delayed
 *            zset unchanged (no attempt charged), as a rate limit defers a job to its window
 *   dead     a = error text, b = reason
 *   bury     as dead, for an entry with no trusted job id: no record is touched and no outcome
 *            is published
 * With the group keys, one more value per operation follows them all, in the same order: the
 * group the worker read off the entry ('' for none), so that an ack finds the entry's group
 * without reading its slot (the slot is still deleted, and only a slot that was there counts).
 * The wake and done channels are pub/sub channels, not keys: they stay in ARGV.
 * Reply: one code per operation (`SettleCode`): 1 done, 0 lease lost (nothing changed), 2 done
 * but the entry had been trimmed away, 3 refused by Redis for memory (nothing changed; try
 * again). Outcome messages are published last, once everything has landed, and only where
 * someone listens: none while no waiter is registered (see waiting.ts), else one PUBSUB NUMSUB
 * per 500 outcomes picks the channels with a subscriber.
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
 *
 * @module
 */
import { RECORD_TTL_MS } from "../keys.ts";
import { PRELUDE, type ScriptQueue } from "./_prelude.ts";
import { GATE, groupKeys } from "./_gate.ts";

/** The delivery a settle acts on: a `Job` is one. Read when the batch is sent, not before. */
export interface Delivery {
  /** The stream entry id. */
  readonly entryId: string;
  /** The delivery count this consumer holds it under (its fencing token). */
  readonly deliveries: number;
  /** The job id, which names its record. */
  readonly id: string;
  /** The attempt: after the first, the record may hold an earlier error, which an ack drops. */
  readonly attempt: number;
  /** The lane (priority stream) it sits in: 0 without priorities. */
  readonly lane?: number;
  /** The job's group, if any: its settle gives the group its room back. */
  readonly group?: string | undefined;
  /** The job's task, named in its events. */
  readonly task?: string;
  /** The job's webhook, if any: its end enqueues a delivery. */
  readonly webhook?: string | undefined;
}

/** A delivery whose job id may be unknown: an entry that cannot run, without a trusted id. */
export interface MaybeOrphan {
  /** The stream entry id. */
  readonly entryId: string;
  /** The delivery count this consumer holds it under. */
  readonly deliveries: number;
  /** The job id, or undefined if the entry has none to trust: then no record is touched. */
  readonly id: string | undefined;
  /** The lane (priority stream) it sits in: 0 without priorities. */
  readonly lane?: number;
}

/** One settle operation. */
export type SettleOp =
  /** Done: the result (JSON text, '' for none) is stored; `startedAt` is ms or ''. */
  | {
    readonly op: "ack";
    readonly job: Delivery;
    readonly result: string;
    readonly startedAt: string;
  }
  /** Cancelled: acked without running to the end; the record ends `cancelled`. */
  | { readonly op: "cancel"; readonly job: Delivery; readonly startedAt: string }
  /** Another attempt, `delay` ms from now on Redis's clock (0: re-added at once). */
  | { readonly op: "retry"; readonly job: Delivery; readonly delay: number; readonly error: string }
  /** Given back unchanged, no attempt charged. */
  | { readonly op: "release"; readonly job: Delivery }
  /** Put off unchanged until `due` (ms, Redis's clock; `+<ms>`: from now), no attempt charged. */
  | { readonly op: "defer"; readonly job: Delivery; readonly due: number | `+${number}` }
  /** Dead-lettered with an error text and a reason. */
  | {
    readonly op: "dead";
    readonly job: MaybeOrphan;
    readonly error: string;
    readonly reason: string;
  };

/** A settle operation's outcome: 1 done, 0 lease lost, 2 done but trimmed, 3 refused (OOM). */
export type SettleCode = 0 | 1 | 2 | 3;

/** The Lua of SETTLE. */
export const SETTLE: string = PRELUDE + GATE + `
local TRIM_SLACK_MS = 5000
local stream, dead, delayed, payloads = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, channel, done = ARGV[1], ARGV[2], ARGV[3]
local keep, live, max_dead = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local consumer, skip, low, high = ARGV[7], #ARGV[8] + 1, ARGV[9], ARGV[10]
local pri = ARGV[11]
ev_on(KEYS[6], ARGV[13], ARGV[8])
-- Events on: the task of every operation, if they share one, else each one's, space-separated.
local tasks, task_of = ARGV[15], nil
if EV and string.find(tasks, ' ', 1, true) then
  task_of = {}
  for t in string.gmatch(tasks, '%S+') do task_of[#task_of + 1] = t end
end
-- With one task: the ids of the 'ack' operations as a JSON array, and how many, built by the
-- worker: their completed events, less those whose lease was lost ('' and 0 otherwise).
local acked, acked_n, lost = ARGV[16], tonumber(ARGV[17]) or 0, nil
-- A batch that may hold grouped jobs names the group keys: each entry that leaves the stream
-- gives its group its room back (g_free), and a re-added one keeps it (g_moved).
-- The gate writes lazily: each of its hashes once per call, in g_flush() before returning.
if ARGV[12] == 'g' then
  G, G_LAZY = {KEYS[7], KEYS[8], KEYS[9], KEYS[10]}, true
  -- A write that frees memory first (of a field that never exists): at maxmemory Redis refuses
  -- only a script's first write, and an ack that moves a waiting job in must not be refused
  -- for its XADD, or acks could never drain a full Redis.
  redis.call('HDEL', G[4], 'e:')
end
local out, now = {}, now_ms()
-- The entries of jobs with a webhook: each gets a delivery job when it ends here.
local hooks = nil
if ARGV[14] ~= '' then
  hooks = {}
  for e in string.gmatch(ARGV[14], '%S+') do hooks[e] = true end
end
-- A job's end, for its webhook: read off its entry, which is still in the stream.
local function hooked(entry, state, detail)
  if not hooks or not hooks[entry] then return end
  local f = fields_of(stream, entry)
  if f then hook(stream, f, state, detail, now) end
end
-- Every result() waiter registers in KEYS[5] as it subscribes: while none is live (and no
-- pattern subscription exists on the server), nobody can hear an outcome, and none is built or
-- published.
silent = redis.call('ZCOUNT', KEYS[5], now, '+inf') == 0 and not patterns()
-- now_s, and until_s, the time a record kept now expires, for the acks below and finish().
stamp(keep, now)
local done_ids = {}
drop, later = {}, {}
-- Fencing: one XPENDING for the whole batch, over the consumer's own deliveries between the
-- batch's lowest and highest entry ids. If that range holds many more of ours than the batch
-- (a long-running job in the middle), it falls back to one XPENDING per job.
local mine = nil
local ops = (#ARGV - 17) / 5
-- With the group keys, each operation's group follows the operations, one value each ('' for
-- none): the gate then finds a settled entry's group without reading its slot.
local groups_at = nil
if G then
  ops = (#ARGV - 17) / 6
  groups_at = 17 + 5 * ops
end
if ops > 0 then
  local most = 4 * ops + 16
  local ok, p = pcall(redis.call, 'XPENDING', stream, group, low, high, most + 1, consumer)
  if ok and #p <= most then
    mine = {}
    for _, e in ipairs(p) do mine[e[1]] = e[4] end
  end
end
-- Retry, release, defer and dead: returns the operation's code.
local function other(op, entry, rec, outcome, a, b)
  local defer = op == 'defer'
  if defer or op == 'retry' and tonumber(a) > 0 then
    -- To the delayed zset: a retry with attempt + 1, a deferral unchanged.
    local f = fields_of(stream, entry)
    local code = 2
    if f ~= nil then
      local wait = tonumber(a)
      if defer and string.sub(a, 1, 1) == '+' then wait = tonumber(string.sub(a, 2))
      elseif defer then wait = math.max(0, wait - now)
      else bump(f) end
      schedule(delayed, payloads, channel, with_pri(f, pri), now, wait)
      if defer then
        redis.call('HSET', rec, 'state', 'delayed', 'due', now + wait)
        if EV then ev('delayed ' .. EV_TASK .. ' ' .. (now + wait), string.sub(rec, skip)) end
      else
        if EV then
          ev('retrying ' .. EV_TASK .. ' ' .. field(f, 'attempt') .. ' ' .. (now + wait),
            string.sub(rec, skip))
        end
        redis.call('HSET', rec, 'state', 'retrying', 'attempt', field(f, 'attempt'),
          'due', now + wait, 'error', b)
      end
      redis.call('HDEL', rec, 'entry')
      redis.call('PEXPIRE', rec, live + wait)
      code = 1
    end
    redis.call('XACK', stream, group, entry)
    redis.call('XDEL', stream, entry)
    if G then g_free(stream, entry) end
    return code
  elseif op == 'retry' or op == 'release' then
    local again = op == 'retry' and 1 or 0
    local new, f = readd(stream, group, entry, again)
    if G and new then g_moved(entry, new) elseif G then g_free(stream, entry) end
    if new then
      if EV and again == 1 then
        ev('retrying ' .. EV_TASK .. ' ' .. field(f, 'attempt') .. ' ' .. now, string.sub(rec, skip))
      elseif EV then
        ev('waiting ' .. EV_TASK, string.sub(rec, skip))
      end
      redis.call('HSET', rec, 'state', 'waiting', 'entry', new, 'attempt', field(f, 'attempt'))
      if again == 1 then redis.call('HSET', rec, 'error', b) end
      redis.call('PEXPIRE', rec, live)
    end
    return new and 1 or 2
  elseif op == 'dead' or op == 'bury' then
    local f = fields_of(stream, entry)
    if f and hooks and hooks[entry] then
      -- The error's first line only (its name and message): a stack stays in the dead letter.
      local first = string.match(a, '^[^\\n]*')
      hook(stream, f, 'dead', ',"error":' .. cjson.encode(first) .. ',"reason":' .. cjson.encode(b),
        now)
    end
    if f then with_pri(f, pri) end
    bury(stream, dead, group, entry, f, a, b, now, max_dead)
    if G then g_free(stream, entry) end
    -- A buried entry with no trusted job id has no record and nobody awaiting it.
    if rec then finish(rec, keep, now, outcome, 'dead', a, b, false) end
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
local k, o, nd = G and 11 or 7, 0, 0 -- the next record key; how many codes and acked ids so far
local n_done, n_failed = 0, 0 -- jobs completed, and failed (retried or dead), for tally()
for i = 18, 17 + 5 * ops, 5 do
  local op, entry, deliveries, a, b = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if task_of then EV_TASK = task_of[(i - 13) / 5] else EV_TASK = tasks end
  -- The channel that announces this job's outcome (none while nobody listens).
  local rec, outcome = nil, nil
  if op ~= 'bury' then
    rec = KEYS[k]
    if not silent then outcome = done .. string.sub(rec, skip) end
    k = k + 1
  end
  local ours
  -- Most deliveries are first ones: "1" is read without tonumber's strtod.
  if mine then ours = mine[entry] == (deliveries == '1' and 1 or tonumber(deliveries))
  else ours = owned(stream, group, entry, consumer, deliveries) end
  o = o + 1
  if not ours then
    out[o] = 0
    if op == 'ack' and acked_n > 0 then
      lost = lost or {}
      lost[string.sub(rec, skip)] = 1
    end
  elseif op == 'ack' or op == 'ack-retried' or op == 'cancel' then
    -- Acked together after the loop: one XACK per batch.
    nd = nd + 1
    done_ids[nd] = entry
    if op ~= 'cancel' then n_done = n_done + 1 end
    if EV and op == 'ack' and acked_n == 0 then
      ev('completed ' .. EV_TASK, string.sub(rec, skip))
    end
    if hooks then
      if op == 'cancel' then hooked(entry, 'cancelled', '')
      else hooked(entry, 'completed', ',"result":' .. (a ~= '' and a or 'null')) end
    end
    if op == 'ack' and keep == 0 then
      -- The common cases, inline: finish() for a first attempt's ack, with no call to make.
      drop[#drop + 1] = rec
      if outcome then
        local n = #later
        later[n + 1], later[n + 2], later[n + 3], later[n + 4] = outcome, 'completed', '', a
      end
    elseif op == 'ack' then
      -- No field result for a handler that returned nothing: a first attempt's record has
      -- none yet, and a missing result reads as an empty one (one listpack insert less).
      local r
      if a == '' then
        r = redis.pcall('HSET', rec, 'state', 'completed', 'finished', now_s, 'run', b)
      else
        r = redis.pcall('HSET', rec, 'state', 'completed', 'finished', now_s, 'result', a, 'run', b)
      end
      if type(r) == 'table' then
        drop[#drop + 1] = rec
      else
        redis.call('PEXPIREAT', rec, until_s)
      end
      if outcome then
        local n = #later
        later[n + 1], later[n + 2], later[n + 3], later[n + 4] = outcome, 'completed', '', a
      end
    else
      local state = op == 'cancel' and 'cancelled' or 'completed'
      finish(rec, keep, now, outcome, state, a, '', op ~= 'ack', 'run', b)
    end
    if G then
      local g = ARGV[groups_at + (i - 13) / 5]
      if g ~= '' then g_free(stream, entry, g, string.sub(rec, skip)) else g_free(stream, entry) end
    end
    out[o] = 1
  elseif (op == 'retry' or op == 'release' or op == 'defer') and
      redis.call('HGET', rec, 'state') == 'cancelling' then
    -- Cancelled while it ran: it ends here, whatever the worker wanted next.
    nd = nd + 1
    done_ids[nd] = entry
    finish(rec, keep, now, outcome, 'cancelled', '', '', true, 'run',
      ' ' .. deliveries .. ' ' .. consumer)
    hooked(entry, 'cancelled', '')
    if G then g_free(stream, entry) end
    out[o] = 1
  else
    -- At maxmemory Redis refuses the first write that may grow memory; a script that has
    -- not written yet is refused whole. pcall keeps the refusal to this one operation, which
    -- then changed nothing (code 3: the worker tries again), and the batch goes on.
    local ok, code = pcall(function()
      return other(op, entry, rec, outcome, a, b)
    end)
    if not ok and string.find(tostring(code.err or code), 'OOM', 1, true) then
      out[o] = 3
    elseif not ok then
      g_flush()
      ev_flush()
      return redis.error_reply(tostring(code.err or code))
    else
      out[o] = code
      if code == 1 and (op == 'retry' or op == 'dead' or op == 'bury') then
        n_failed = n_failed + 1
      end
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
g_flush()
if EV then ev_batch('completed ' .. tasks, acked, acked_n, lost) end
ev_flush()
if EV then tally(KEYS[#KEYS], now, n_done, n_failed) end
announce()
return out
`;

/**
 * The arguments of one SETTLE call for `ops`, key count first. Runs per settle flush: one pass
 * for the keys and the entry id range, one for the operations, plain pushes only.
 *
 * @param q The queue.
 * @param consumer The consumer that holds the deliveries.
 * @param ops The operations, in the order of the codes SETTLE replies with.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function settleArgs(q: ScriptQueue, consumer: string, ops: readonly SettleOp[]): string[] {
  const { keys } = q;
  const events = q.events !== undefined && q.events > 0;
  const args = ["", keys.stream, keys.dead, keys.delayed, keys.payloads, keys.waiters, keys.events];
  let low = ops[0]?.job.entryId ?? "-", high = ops[0]?.job.entryId ?? "+";
  // Grouped jobs, and entries dead-lettered (which may be grouped entries that cannot be
  // decoded), need the group keys; a batch of plain jobs pays nothing for groups.
  // Grouped jobs sit in the lowest priority's stream only: other lanes' views never pass them.
  let grouped = false;
  for (let i = 0; q.pri === undefined && i < ops.length; i++) {
    const op = ops[i]!;
    if (op.op === "dead" || (op.job as Delivery).group !== undefined) {
      grouped = true;
      break;
    }
  }
  if (grouped) args.push(...groupKeys(keys));
  for (let i = 0; i < ops.length; i++) {
    const { entryId, id } = ops[i]!.job;
    if (id !== undefined) args.push(keys.job(id));
    if (entryBefore(entryId, low)) low = entryId;
    else if (entryBefore(high, entryId)) high = entryId;
  }
  if (events) args.push(keys.minutes);
  args[0] = String(args.length - 1);
  args.push(
    q.group,
    keys.wake,
    keys.done,
    String(q.keepResult),
    String(RECORD_TTL_MS),
    String(q.maxDead),
    consumer,
    keys.jobPrefix,
    low,
    high,
    q.pri ?? "",
    grouped ? "g" : "",
    events ? String(q.events) : "",
  );
  const tasks = events ? tasksOf(ops) : "";
  // With events on and one task: the ids of the 'ack' operations, for their completed events.
  const acked: string[] | undefined = events && !tasks.includes(" ") ? [] : undefined;
  // The entries of jobs with a webhook, space-separated (entry ids have no spaces), go here;
  // then the tasks, and the acked ids and their count.
  const hooksAt = args.length;
  args.push("", tasks, "", "0");
  let hooks = "";
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    const { entryId } = op.job, deliveries = String(op.job.deliveries);
    switch (op.op) {
      case "ack":
        if (acked !== undefined && op.job.attempt === 1) acked.push(op.job.id);
        args.push(
          op.job.attempt > 1 ? "ack-retried" : "ack",
          entryId,
          deliveries,
          op.result,
          // The record's run field; with no record kept, nothing reads it.
          q.keepResult === 0 ? "" : `${op.startedAt} ${deliveries} ${consumer}`,
        );
        break;
      case "cancel":
        args.push("cancel", entryId, deliveries, "", `${op.startedAt} ${deliveries} ${consumer}`);
        break;
      case "retry":
        args.push("retry", entryId, deliveries, String(op.delay), op.error);
        break;
      case "release":
        args.push("release", entryId, deliveries, "", "");
        break;
      case "defer":
        args.push("defer", entryId, deliveries, String(op.due), "");
        break;
      case "dead":
        args.push(
          op.job.id === undefined ? "bury" : "dead",
          entryId,
          deliveries,
          op.error,
          op.reason,
        );
    }
    if ((op.job as Delivery).webhook !== undefined) hooks += hooks === "" ? entryId : ` ${entryId}`;
  }
  args[hooksAt] = hooks;
  if (grouped) { for (const op of ops) args.push((op.job as Delivery).group ?? ""); }
  if (acked !== undefined && acked.length > 0) {
    args[hooksAt + 2] = JSON.stringify(acked);
    args[hooksAt + 3] = String(acked.length);
  }
  return args;
}

/** The tasks of `ops` for SETTLE's events: one name if they share it, else one per op. */
function tasksOf(ops: readonly SettleOp[]): string {
  const first = (ops[0]?.job as Delivery | undefined)?.task ?? "?";
  let i = 1;
  while (i < ops.length && ((ops[i]!.job as Delivery).task ?? "?") === first) i++;
  if (i === ops.length) return first;
  return ops.map((op) => (op.job as Delivery).task ?? "?").join(" ");
}

/** Stream entry ids compare as two numbers of any size: as digit strings, length first. */
export function entryBefore(a: string, b: string): boolean {
  const cutA = a.indexOf("-"), cutB = b.indexOf("-");
  if (cutA !== cutB) return cutA < cutB;
  // Both parts of the same lengths (the usual case): the strings compare as the numbers do.
  if (a.length === b.length) return a < b;
  const msA = a.slice(0, cutA), msB = b.slice(0, cutB);
  if (msA !== msB) return msA < msB;
  if (a.length !== b.length) return a.length < b.length;
  return a < b;
}

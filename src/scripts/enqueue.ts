/**
 * ENQUEUE: writes a batch of jobs of one task, each unless its id is still known (dedup).
 * `enqueueHead` and `enqueueArgs` build its arguments.
 *
 * KEYS: stream (the jobs' priority's), delayed, payloads, events, the four group keys if the
 * shape starts with 'grouped' (see _gate.ts), then one record per job.
 * ARGV: wake channel, live ms, task, enq, record key prefix, wire version, shape, pri (the
 * priority of every job of the call, written right after enq; '' for none), the events cap
 * ('' for no events: see events.ts), the JSON array of the ids of the jobs due now and their
 * count (their waiting events, less the ids known already; '' and 0 with events off); then per
 * job, if
 * shape is 'plain' (due now, no optional fields), its data alone; else mode ('now', 'delay'
 * or 'at'), ms, n, data, then n values: the job's optional fields as field/value pairs (trace to
 * sig, as encodeExtras in codec.ts lays them out). Shape 'grouped' (or 'grouped-new') is 'full'
 * for a call with grouped jobs: a job with field group due now goes through the group gate
 * (its group's line if the group has no room), and its record gets field group (and place,
 * its place in the line). With 'delay' a job is due `ms` after Redis
 * TIME, so producer clocks do not matter; with 'at' it is due at epoch ms.
 * The wake channel is a pub/sub channel, not a key: it stays in ARGV.
 * Reply (`EnqueueReply`): one value per job: the entry id if written to the stream, the due
 * time if written to the delayed zset, or {entry id or '', due time or 0} if the id was known
 * (a duplicate). A shape ending in '-new' ('plain-new', 'full-new') says every id of the call
 * was made by the producer just now (a UUIDv7): only the first job's record is looked for,
 * which exists only if this very call ran already (a resend after a lost reply).
 *
 * The entry's leading fields are the same for the whole batch, bar id (the record key minus the
 * prefix) and data, so the script writes them itself, in the order of encodeFields in codec.ts,
 * and no job carries them: fewer arguments cost less on both sides. No table is built per job.
 *
 * A record starts small: state, entry (or due) and field job, "<enq> <task>", the same for the
 * whole call; attempt is 1 until a retry writes it. Each field of a new hash costs Redis a
 * listpack insert: three fields in place of five cut the record's HSET by about a sixth and an
 * enqueue's Redis CPU by about 5%. handle.ts reads either layout.
 *
 * @module
 */
import { type Keys, RECORD_TTL_MS } from "../keys.ts";
import { PRELUDE } from "./_prelude.ts";
import { GATE, groupKeys } from "./_gate.ts";

/** One job of an ENQUEUE call. */
export interface EnqueueJob {
  /** The job id. */
  readonly id: string;
  /** The data as JSON text. */
  readonly data: string;
  /** When it is due: undefined for now, else a delay (ms) or an epoch time (ms). */
  readonly when: { readonly mode: "delay" | "at"; readonly ms: number } | undefined;
  /** The optional wire fields (trace to sig), flat; undefined if none. */
  readonly extras: readonly string[] | undefined;
  /** True if the producer made the id just now (a UUIDv7): it cannot be known already. */
  readonly made?: boolean;
  /** True if `extras` holds field group: the call then names the group keys. */
  readonly grouped?: boolean;
}

/** What ENQUEUE replies, per job: entry id, due time, or {entry id, due time} if known. */
export type EnqueueReply = (string | number | [string, number])[];

/** The Lua of ENQUEUE. */
export const ENQUEUE: string = PRELUDE + GATE + `
local stream, delayed, payloads = KEYS[1], KEYS[2], KEYS[3]
local wake, live, task, enq = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local skip, v, shape, pri = #ARGV[5] + 1, ARGV[6], ARGV[7], ARGV[8]
local plain = shape == 'plain' or shape == 'plain-new'
ev_on(KEYS[4], ARGV[9], ARGV[5])
-- The ids of the jobs due now, as a JSON array, and how many, built by the producer: their
-- waiting events, less the ids known already ('' and 0 with events off).
local fresh, fresh_n, known = ARGV[10], tonumber(ARGV[11]) or 0, nil
-- A call with grouped jobs names the group keys (see _gate.ts) before the records.
local first = 5
if string.sub(shape, 1, 7) == 'grouped' then
  G, G_LAZY = {KEYS[5], KEYS[6], KEYS[7], KEYS[8]}, true
  first = 9
  shape = 'full' .. string.sub(shape, 8)
end
-- Ids made by the producer just now (UUIDv7) cannot be known: no dedup look per job, which
-- saves Redis about a fifth of an enqueue. Unless this very call ran already: ioredis sends a
-- call again when a disconnect lost its reply, and then its first id is known. One look tells.
local check = shape == 'plain' or shape == 'full'
local call, sub = redis.call, string.sub
if not check and KEYS[first] and call('EXISTS', KEYS[first]) == 1 then check = true end
local out, now = {}, now_ms()
-- One expiry time for the batch's waiting records: PEXPIREAT is what PEXPIRE is rewritten to.
local expire_at = now + live
-- Formatted once: a number handed to redis.call is formatted on every call.
local expire_s = tostring(expire_at)
local a = 12
-- The record's field job: the same for the whole batch.
local job = enq .. ' ' .. task
for k = first, #KEYS do
  local rec, o = KEYS[k], k - first + 1
  local mode, ms, n, data = 'now', 0, 0, nil
  if plain then
    data = ARGV[a]
    a = a + 1
  else
    mode, ms, n, data = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3]
    a = a + 4 + n
  end
  -- Field group, among the optional fields: only calls with grouped jobs look.
  local g = nil
  if G and n > 0 then
    for i = a - n, a - 2, 2 do
      if ARGV[i] == 'group' then g = ARGV[i + 1] break end
    end
  end
  if check and call('EXISTS', rec) == 1 then
    local r = call('HMGET', rec, 'entry', 'due')
    out[o] = {r[1] or '', tonumber(r[2] or '0')}
    if EV and mode == 'now' then
      known = known or {}
      local id = sub(rec, skip)
      known[id] = (known[id] or 0) + 1
    end
  elseif g and mode == 'now' then
    local id = sub(rec, skip)
    local f = {'v', v, 'id', id, 'task', task, 'data', data, 'attempt', '1', 'enq', enq}
    for i = a - n, a - 1 do f[#f + 1] = ARGV[i] end
    local entry, place = g_admit(stream, g, f)
    if entry then
      call('HSET', rec, 'state', 'waiting', 'entry', entry, 'job', job, 'group', g)
    else
      call('HSET', rec, 'state', 'waiting', 'job', job, 'group', g, 'place', place)
    end
    call('PEXPIREAT', rec, expire_s)
    out[o] = entry or ''
  elseif mode == 'now' then
    local entry
    if n == 0 and pri == '' then
      entry = call('XADD', stream, '*', 'v', v, 'id', sub(rec, skip), 'task', task,
        'data', data, 'attempt', '1', 'enq', enq)
    elseif n == 0 then
      entry = call('XADD', stream, '*', 'v', v, 'id', sub(rec, skip), 'task', task,
        'data', data, 'attempt', '1', 'enq', enq, 'pri', pri)
    elseif pri == '' then
      entry = call('XADD', stream, '*', 'v', v, 'id', sub(rec, skip), 'task', task,
        'data', data, 'attempt', '1', 'enq', enq, unpack(ARGV, a - n, a - 1))
    else
      entry = call('XADD', stream, '*', 'v', v, 'id', sub(rec, skip), 'task', task,
        'data', data, 'attempt', '1', 'enq', enq, 'pri', pri, unpack(ARGV, a - n, a - 1))
    end
    call('HSET', rec, 'state', 'waiting', 'entry', entry, 'job', job)
    call('PEXPIREAT', rec, expire_s)
    out[o] = entry
  else
    local due = ms
    if mode == 'delay' then due = now + ms end
    local wait = math.max(0, due - now)
    local f = {'v', v, 'id', sub(rec, skip), 'task', task, 'data', data, 'attempt', '1',
      'enq', enq}
    if pri ~= '' then
      f[#f + 1] = 'pri'
      f[#f + 1] = pri
    end
    for i = a - n, a - 1 do f[#f + 1] = ARGV[i] end
    schedule(delayed, payloads, wake, f, now, wait)
    if g then
      call('HSET', rec, 'state', 'delayed', 'due', due, 'job', job, 'group', g)
    else
      call('HSET', rec, 'state', 'delayed', 'due', due, 'job', job)
    end
    call('PEXPIREAT', rec, expire_at + wait)
    if EV then ev('delayed ' .. task .. ' ' .. due, sub(rec, skip)) end
    out[o] = due
  end
end
g_flush()
if EV then ev_batch('waiting ' .. task, fresh, fresh_n, known) end
ev_flush()
return out
`;

/**
 * The arguments every ENQUEUE call of one enqueue shares: build them once, pass them to each
 * `enqueueArgs`.
 *
 * @param keys The queue's keys.
 * @param task The task name.
 * @param enq The enqueue time, ms since epoch.
 * @param version The wire version.
 * @returns The shared arguments.
 */
export function enqueueHead(keys: Keys, task: string, enq: number, version: string): string[] {
  return [keys.wake, String(RECORD_TTL_MS), task, String(enq), keys.jobPrefix, version];
}

/**
 * The arguments of one ENQUEUE call, for jobs `from` to `to`, key count first.
 *
 * @param keys The queue's keys.
 * @param stream The stream the jobs due now go to: their priority's.
 * @param head What `enqueueHead` built.
 * @param jobs The jobs.
 * @param from The first job of this call.
 * @param to One past the last job of this call.
 * @param pri The jobs' priority, written in field pri ('' for the lowest: none).
 * @param events The events cap (0: no events).
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function enqueueArgs(
  keys: Keys,
  stream: string,
  head: readonly string[],
  jobs: readonly EnqueueJob[],
  from: number,
  to: number,
  pri = "",
  events = 0,
): string[] {
  let plain = true, made = true, grouped = false;
  for (let i = from; i < to; i++) {
    const job = jobs[i]!;
    if (job.when !== undefined || job.extras !== undefined) plain = false;
    if (job.made !== true) made = false;
    if (job.grouped === true) grouped = true;
  }
  const args = ["", stream, keys.delayed, keys.payloads, keys.events];
  if (grouped) args.push(...groupKeys(keys));
  for (let i = from; i < to; i++) args.push(keys.job(jobs[i]!.id));
  args[0] = String(args.length - 1);
  for (const arg of head) args.push(arg);
  args.push(
    (grouped ? "grouped" : plain ? "plain" : "full") + (made ? "-new" : ""),
    pri,
    events > 0 ? String(events) : "",
  );
  // With events on: the ids of the jobs due now, for their waiting events.
  const fresh: string[] = [];
  if (events > 0) { for (let i = from; i < to; i++) if (!jobs[i]!.when) fresh.push(jobs[i]!.id); }
  args.push(fresh.length > 0 ? JSON.stringify(fresh) : "", String(fresh.length));
  for (let i = from; i < to; i++) {
    const { data, when, extras } = jobs[i]!;
    if (plain) {
      args.push(data);
      continue;
    }
    args.push(when?.mode ?? "now", String(when?.ms ?? 0), String(extras?.length ?? 0), data);
    if (extras !== undefined) args.push(...extras);
  }
  return args;
}

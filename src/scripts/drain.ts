/**
 * DRAIN and CLEAN: the bulk actions of the admin API (bulk.ts), one bounded batch per call.
 *
 * DRAIN ends waiting and delayed jobs as cancelled, never a job a worker holds. `drainArgs`
 * builds its arguments.
 * KEYS: stream (the lowest priority's: webhook deliveries go there, and grouped jobs live
 * there), lane (the stream being drained, or the lowest again), delayed, payloads, waiters,
 * events, the four group keys (see _gate.ts), then one record per job of the batch.
 * ARGV: mode ('stream', 'delayed' or 'line'), group, done channel prefix, keep ms, the events
 * cap ('' for none), the record key prefix, then per job of the batch:
 * - 'stream': its entry id in the lane. Only entries past the group's last delivered id go:
 *   those no consumer has read. A pending entry is never past it, so a job read meanwhile stays.
 *   Webhook deliveries (task `sluice.webhook`) stay too: they report jobs that have ended.
 * - 'delayed': its job id, removed from the delayed zset if it is still there (webhook
 *   deliveries waiting to be tried again stay).
 * - 'line': "<place> <group>", for a grouped job waiting in its group's line (the record key
 *   names the job id, which the item at that place must match).
 * Reply: how many jobs were drained.
 *
 * Each job ends as CANCEL ends one: its record says cancelled, a result() waiter hears it, its
 * webhook is enqueued and its event written. An entry with no record (written by another
 * language with a plain XADD, or whose record expired) goes too.
 *
 * CLEAN deletes finished records older than a cutoff. `cleanArgs` builds its arguments.
 * KEYS: the records to look at. ARGV: state ('completed' or 'cancelled'), cutoff (epoch ms).
 * Reply: how many were deleted: those still in that state, finished before the cutoff.
 *
 * @module
 */
import { GATE, groupKeys } from "./_gate.ts";
import { PRELUDE, type ScriptQueue } from "./_prelude.ts";

/** The Lua of DRAIN. */
export const DRAIN: string = PRELUDE + GATE + `
local stream, lane, delayed, payloads = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
G, G_LAZY = {KEYS[7], KEYS[8], KEYS[9], KEYS[10]}, true
local mode, group, done, keep, prefix = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[6]
ev_on(KEYS[6], ARGV[5], prefix)
silent = redis.call('ZCOUNT', KEYS[5], now_ms(), '+inf') == 0 and not patterns()
later = {}
local now, drained = now_ms(), 0
-- Entry ids compare as "<ms>-<seq>", number by number.
local function after(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, bm = tonumber(am), tonumber(bm)
  return am > bm or am == bm and tonumber(as) > tonumber(bs)
end
-- Ends job f (its entry fields) as cancelled: its record if it has one, its webhook, its event.
local function ends(rec, f)
  EV_TASK = field(f, 'task') or '?'
  hook(stream, f, 'cancelled', '', now)
  local state = redis.call('HGET', rec, 'state')
  if state then
    redis.call('HDEL', rec, 'due', 'place')
    finish(rec, keep, now, done .. string.sub(rec, #prefix + 1), 'cancelled', '', '', true)
  elseif EV then
    ev('cancelled ' .. EV_TASK, string.sub(rec, #prefix + 1))
  end
  drained = drained + 1
end
local last = '0-0'
if mode == 'stream' then
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', lane)
  if ok then
    for _, g in ipairs(groups) do
      if field(g, 'name') == group then last = field(g, 'last-delivered-id') end
    end
  end
end
for i = 7, #ARGV do
  local rec = KEYS[i + 4]
  local id = string.sub(rec, #prefix + 1)
  if mode == 'stream' then
    local entry = ARGV[i]
    local f = after(entry, last) and fields_of(lane, entry)
    if f and (field(f, 'id') or '') == id and field(f, 'task') ~= 'sluice.webhook' then
      redis.call('XDEL', lane, entry)
      if lane == stream then g_free(stream, entry) end
      ends(rec, f)
    end
  elseif mode == 'delayed' then
    local ok, f = pcall(cjson.decode, redis.call('HGET', payloads, id) or '')
    if not ok or type(f) ~= 'table' then f = {'id', id} end
    -- A webhook delivery waiting to be tried again reports a job that ended: it stays.
    if field(f, 'task') ~= 'sluice.webhook' and redis.call('ZREM', delayed, id) == 1 then
      redis.call('HDEL', payloads, id)
      ends(rec, f)
    end
  else
    local place, g = string.match(ARGV[i], '^(%d+) (.*)$')
    local gone, f = g_unwait(g, tonumber(place), id)
    if gone then ends(rec, f) end
  end
end
g_flush()
ev_flush()
announce()
return drained
`;

/** Which of a queue's jobs a DRAIN call ends. */
export type DrainMode = "stream" | "delayed" | "line";

/**
 * The arguments of one DRAIN call, key count first.
 *
 * @param q The queue: its keys, group, keepResult and events cap.
 * @param mode What the batch holds (see the module doc).
 * @param lane The stream drained, for mode 'stream' (else the lowest priority's).
 * @param jobs The batch: per job its id, and its entry id ('stream') or "<place> <group>"
 *   ('line'); 'delayed' needs only the id.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function drainArgs(
  q: Pick<ScriptQueue, "keys" | "group" | "keepResult" | "events">,
  mode: DrainMode,
  lane: string,
  jobs: readonly { readonly id: string; readonly at?: string }[],
): string[] {
  const { keys } = q;
  const args = [
    String(10 + jobs.length),
    keys.stream,
    lane,
    keys.delayed,
    keys.payloads,
    keys.waiters,
    keys.events,
    ...groupKeys(keys),
  ];
  for (const job of jobs) args.push(keys.job(job.id));
  args.push(
    mode,
    q.group,
    keys.done,
    String(q.keepResult),
    q.events ? String(q.events) : "",
    keys.jobPrefix,
  );
  for (const job of jobs) args.push(job.at ?? job.id);
  return args;
}

/** The Lua of CLEAN. */
export const CLEAN = `
local state, cutoff, n = ARGV[1], tonumber(ARGV[2]), 0
for _, rec in ipairs(KEYS) do
  local r = redis.call('HMGET', rec, 'state', 'finished')
  if r[1] == state and (tonumber(r[2]) or 0) < cutoff then
    redis.call('DEL', rec)
    n = n + 1
  end
end
return n
`;

/**
 * The arguments of one CLEAN call, key count first.
 *
 * @param records The record keys to look at.
 * @param state Delete those in this state...
 * @param cutoff ...that finished before this time (epoch ms).
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function cleanArgs(records: readonly string[], state: string, cutoff: number): string[] {
  return [String(records.length), ...records, state, String(cutoff)];
}

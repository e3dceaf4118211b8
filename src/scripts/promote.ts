/**
 * DUE and PROMOTE: move due delayed jobs to their priority's stream, on Redis TIME, in two steps so that
 * every record key is named in KEYS. `promote` runs both.
 *
 * DUE (read-only)
 *   KEYS: delayed, ticks, schedules, runs.
 *   ARGV: limit.
 *   Reply (`DueReply`): { the ids due now, at most limit; ms until the next delayed job or
 *   schedule tick is due if none is due now (-1 if there is none), else 0; Redis TIME in ms;
 *   the schedules due now, flat: id, tick, definition, run state ('' if none), at most 100 }.
 *
 * PROMOTE
 *   KEYS: stream (the lowest priority's), delayed, payloads, ticks, events, the four group keys
 *   (see _gate.ts), then the stream of every other priority (none without priorities), then
 *   one record per id.
 *   ARGV: n, the number of other priorities; their n names, in the order of their streams;
 *   the events cap ('' for none: else each job moved gets event `waiting`); then the ids, in
 *   the order of their records.
 *   Reply (`PromoteReply`): { moved, ms until the next delayed job or tick is due (-1 if none) }.
 *
 * A job goes back to the stream of its field `pri`; without it, or with a name that is not one
 * of the n, to the lowest priority's stream. With one priority (n = 0) no field is looked up.
 * A job with field group goes through its group's gate instead (see _gate.ts): into the lowest
 * priority's stream if the group has room, else to the end of its group's line.
 *
 * Schedules (see schedule.ts) cost a queue that has none one ZRANGE of an empty key inside
 * these scripts, nothing more: no extra call. Due ticks are fired by FIRE (scripts/schedule.ts),
 * which needs the next tick time computed in JS (cron), so DUE only reports them.
 *
 * PROMOTE moves an id only if it is still on the delayed zset and still due by Redis TIME: a
 * racing worker that moved it first removed it (so no job is promoted twice), and a cancel and
 * a new delayed enqueue of the same id in between put it back due later. It re-adds the payload
 * to the stream, points the record (if any) at the new entry, and removes the payload and the
 * id. It checks with ZSCORE before it writes instead of acting on what ZREM returns: at
 * maxmemory Redis refuses a script whose first write may grow memory, so the XADD comes first
 * and a refused promotion changes nothing.
 *
 * @module
 */
import { GATE, GROUP_KEYS, groupKeys } from "./_gate.ts";
import { PRELUDE, type ScriptQueue } from "./_prelude.ts";
import type { ScriptClient } from "./mod.ts";
import type { Lanes } from "../priority.ts";

/** What PROMOTE needs to know of a queue: its keys and its priorities' streams. */
export type PromoteQueue = Pick<ScriptQueue, "keys" | "events"> & { readonly lanes: Lanes };

/** What DUE replies: the ids due now, ms until the next one if none is (-1: none), Redis TIME
 * (ms), and the due schedules (flat: id, tick, definition, run state). */
export type DueReply = [ids: string[], wait: number, now: number, schedules: string[]];
/** What PROMOTE replies: how many were moved, and ms until the next one is due (-1: none). */
export type PromoteReply = [moved: number, wait: number];

/** Lua: ms from `now` until the first member of zsets `a` and `b` is due (-1: both empty). */
const NEXT_WAIT = `
local function next_wait(a, b, now)
  local first = nil
  for _, key in ipairs({a, b}) do
    local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if head[2] and (first == nil or tonumber(head[2]) < first) then first = tonumber(head[2]) end
  end
  if first == nil then return -1 end
  return math.max(0, first - now)
end
`;

/** The Lua of DUE (read-only). */
export const DUE: string = PRELUDE + NEXT_WAIT + `
local delayed, ticks, schedules, runs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local sched = {}
local head = redis.call('ZRANGE', ticks, 0, 0, 'WITHSCORES')
if head[2] and tonumber(head[2]) <= now then
  local ids = redis.call('ZRANGEBYSCORE', ticks, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 100)
  for i = 1, #ids, 2 do
    sched[#sched + 1] = ids[i]
    sched[#sched + 1] = ids[i + 1]
    sched[#sched + 1] = redis.call('HGET', schedules, ids[i]) or ''
    sched[#sched + 1] = redis.call('HGET', runs, ids[i]) or ''
  end
end
local wait = 0
if #due == 0 and #sched == 0 then wait = next_wait(delayed, ticks, now) end
return {due, wait, now, sched}
`;

/** The Lua of PROMOTE. */
export const PROMOTE: string = PRELUDE + GATE + NEXT_WAIT + `
local stream, delayed, payloads, ticks = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
G, G_LAZY = {KEYS[6], KEYS[7], KEYS[8], KEYS[9]}, true
local n = tonumber(ARGV[1])
ev_on(KEYS[5], ARGV[n + 2], '')
local lanes = nil -- priority name -> its stream, with priorities
if n > 0 then
  lanes = {}
  for j = 1, n do lanes[ARGV[j + 1]] = KEYS[j + 9] end
end
local now = now_ms()
local moved = 0
for i = n + 3, #ARGV do
  local id, rec = ARGV[i], KEYS[i + 7]
  local score = redis.call('ZSCORE', delayed, id)
  if score and tonumber(score) <= now then
    local payload = redis.call('HGET', payloads, id)
    if payload then
      local ok, f = pcall(cjson.decode, payload)
      if ok and type(f) == 'table' and #f > 0 then
        if EV then ev('waiting ' .. (field(f, 'task') or '?'), id) end
        local g = field(f, 'group')
        if g then
          -- A grouped job goes through its group's gate, in the lowest priority's stream.
          local entry, place = g_admit(stream, g, f)
          if redis.call('EXISTS', rec) == 1 then
            if entry then
              redis.call('HSET', rec, 'state', 'waiting', 'entry', entry)
            else
              redis.call('HSET', rec, 'state', 'waiting', 'place', place)
              redis.call('HDEL', rec, 'entry')
            end
            redis.call('HDEL', rec, 'due')
          end
        else
          local target = stream
          if lanes then target = lanes[field(f, 'pri') or ''] or stream end
          local entry = redis.call('XADD', target, '*', unpack(f))
          if redis.call('EXISTS', rec) == 1 then
            redis.call('HSET', rec, 'state', 'waiting', 'entry', entry)
            redis.call('HDEL', rec, 'due')
          end
        end
      end
      redis.call('HDEL', payloads, id)
    end
    redis.call('ZREM', delayed, id)
    moved = moved + 1
  end
end
g_flush()
ev_flush()
return {moved, next_wait(delayed, ticks, now)}
`;

/**
 * The arguments of one DUE call, key count first.
 *
 * @param q The queue.
 * @param limit The most ids to pick.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function dueArgs(q: Pick<ScriptQueue, "keys">, limit: number): string[] {
  const { keys } = q;
  return ["4", keys.delayed, keys.ticks, keys.schedules, keys.runs, String(limit)];
}

/**
 * The arguments of one PROMOTE call, key count first.
 *
 * @param q The queue: its keys and priorities.
 * @param ids The ids DUE picked.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function promoteArgs(q: PromoteQueue, ids: readonly string[]): string[] {
  const { keys, lanes: { streams, labels } } = q;
  // The other priorities: every lane but the last (the lowest, which is keys.stream).
  const others = streams.length - 1;
  const args = [
    String(5 + GROUP_KEYS + others + ids.length),
    keys.stream,
    keys.delayed,
    keys.payloads,
    keys.ticks,
    keys.events,
    ...groupKeys(keys),
  ];
  for (let lane = 0; lane < others; lane++) args.push(streams[lane]!);
  for (const id of ids) args.push(keys.job(id));
  args.push(String(others));
  for (let lane = 0; lane < others; lane++) args.push(labels[lane]!);
  args.push(q.events ? String(q.events) : "");
  for (const id of ids) args.push(id);
  return args;
}

/**
 * Moves up to `limit` due delayed jobs to the stream: one DUE call, and a PROMOTE call only if
 * some are due.
 *
 * @param client A client with the scripts defined.
 * @param q The queue: its keys and priorities.
 * @param limit The most jobs to move.
 * @returns How many were moved (`limit`: more may be due now), ms until the next one is due
 * (-1 if none), Redis TIME (ms), and the schedules due now (flat, as DUE replies them).
 */
export async function promote(
  client: ScriptClient,
  q: PromoteQueue,
  limit: number,
): Promise<[moved: number, wait: number, now: number, schedules: string[]]> {
  const [ids, wait, now, schedules] = await client.sluiceDue(dueArgs(q, limit));
  if (ids.length === 0) return [0, wait, now, schedules];
  const [moved, next] = await client.sluicePromote(promoteArgs(q, ids));
  return [moved, next, now, schedules];
}

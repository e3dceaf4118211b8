/**
 * DUE and PROMOTE: move due delayed jobs to the stream, on Redis TIME, in two steps so that
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
 *   KEYS: stream, delayed, payloads, ticks, then one record per id.
 *   ARGV: the ids, in the order of their records.
 *   Reply (`PromoteReply`): { moved, ms until the next delayed job or tick is due (-1 if none) }.
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
import { PRELUDE, type ScriptQueue } from "./_prelude.ts";
import type { ScriptClient } from "./mod.ts";

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
export const PROMOTE: string = PRELUDE + NEXT_WAIT + `
local stream, delayed, payloads, ticks = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = now_ms()
local moved = 0
for i = 1, #ARGV do
  local id, rec = ARGV[i], KEYS[i + 4]
  local score = redis.call('ZSCORE', delayed, id)
  if score and tonumber(score) <= now then
    local payload = redis.call('HGET', payloads, id)
    if payload then
      local ok, f = pcall(cjson.decode, payload)
      if ok and type(f) == 'table' and #f > 0 then
        local entry = redis.call('XADD', stream, '*', unpack(f))
        if redis.call('EXISTS', rec) == 1 then
          redis.call('HSET', rec, 'state', 'waiting', 'entry', entry)
          redis.call('HDEL', rec, 'due')
        end
      end
      redis.call('HDEL', payloads, id)
    end
    redis.call('ZREM', delayed, id)
    moved = moved + 1
  end
end
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
 * @param q The queue.
 * @param ids The ids DUE picked.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function promoteArgs(q: Pick<ScriptQueue, "keys">, ids: readonly string[]): string[] {
  const { keys } = q;
  const args = [String(4 + ids.length), keys.stream, keys.delayed, keys.payloads, keys.ticks];
  for (const id of ids) args.push(keys.job(id));
  for (const id of ids) args.push(id);
  return args;
}

/**
 * Moves up to `limit` due delayed jobs to the stream: one DUE call, and a PROMOTE call only if
 * some are due.
 *
 * @param client A client with the scripts defined.
 * @param q The queue.
 * @param limit The most jobs to move.
 * @returns How many were moved (`limit`: more may be due now), ms until the next one is due
 * (-1 if none), Redis TIME (ms), and the schedules due now (flat, as DUE replies them).
 */
export async function promote(
  client: ScriptClient,
  q: Pick<ScriptQueue, "keys">,
  limit: number,
): Promise<[moved: number, wait: number, now: number, schedules: string[]]> {
  const [ids, wait, now, schedules] = await client.sluiceDue(dueArgs(q, limit));
  if (ids.length === 0) return [0, wait, now, schedules];
  const [moved, next] = await client.sluicePromote(promoteArgs(q, ids));
  return [moved, next, now, schedules];
}

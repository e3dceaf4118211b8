/**
 * DUE and PROMOTE: move due delayed jobs to the stream, on Redis TIME, in two steps so that
 * every record key is named in KEYS. `promote` runs both.
 *
 * DUE (read-only)
 *   KEYS: delayed.
 *   ARGV: limit.
 *   Reply (`DueReply`): { the ids due now, at most limit; ms until the next one is due if none
 *   is due now (-1 if the set is empty), else 0 }.
 *
 * PROMOTE
 *   KEYS: stream, delayed, payloads, then one record per id.
 *   ARGV: the ids, in the order of their records.
 *   Reply (`PromoteReply`): { moved, ms until the next one is due (-1 if none) }.
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

/** What DUE replies: the ids due now, and ms until the next one if none is (-1: none). */
export type DueReply = [ids: string[], wait: number];
/** What PROMOTE replies: how many were moved, and ms until the next one is due (-1: none). */
export type PromoteReply = [moved: number, wait: number];

/** The Lua of DUE (read-only). */
export const DUE: string = PRELUDE + `
local delayed = KEYS[1]
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local wait = 0
if #due == 0 then
  wait = -1
  local next = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  if next[2] then wait = math.max(0, tonumber(next[2]) - now) end
end
return {due, wait}
`;

/** The Lua of PROMOTE. */
export const PROMOTE: string = PRELUDE + `
local stream, delayed, payloads = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
local moved = 0
for i = 1, #ARGV do
  local id, rec = ARGV[i], KEYS[i + 3]
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
local next = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local wait = -1
if next[2] then wait = math.max(0, tonumber(next[2]) - now) end
return {moved, wait}
`;

/**
 * The arguments of one DUE call, key count first.
 *
 * @param q The queue.
 * @param limit The most ids to pick.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function dueArgs(q: Pick<ScriptQueue, "keys">, limit: number): string[] {
  return ["1", q.keys.delayed, String(limit)];
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
  const args = [String(3 + ids.length), keys.stream, keys.delayed, keys.payloads];
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
 * @returns How many were moved (`limit`: more may be due now), and ms until the next one is due
 * (-1 if none).
 */
export async function promote(
  client: ScriptClient,
  q: Pick<ScriptQueue, "keys">,
  limit: number,
): Promise<PromoteReply> {
  const [ids, wait] = await client.sluiceDue(dueArgs(q, limit));
  if (ids.length === 0) return [0, wait];
  return await client.sluicePromote(promoteArgs(q, ids));
}

/**
 * HELD, RETIRE and RETIRE_END: give back what a stopping consumer still has pending, then
 * delete the consumer, in steps so that every record key is named in KEYS. `retire` runs them.
 *
 * HELD (read-only)
 *   KEYS: stream.
 *   ARGV: group, consumer, start (an entry id range start: '-' or '(<entry id>'), count.
 *   Reply: flat pairs of entry id, job id (the entry's `id` field; '' if the entry is gone or
 *   has none), the consumer's pending entries from start, at most count; none if the group is
 *   missing.
 *
 * RETIRE
 *   KEYS: stream, events, the four group keys for the lowest priority's stream (see
 *   _gate.ts), then the record of each listed entry that has a job id, in order.
 *   ARGV: group, consumer, done channel prefix, keep ms, 'g' if the group keys are given (else
 *   ''), the events cap ('' for none), the record key prefix, then pairs of entry id, job id
 *   ('').
 *   The done channels are pub/sub channels, not keys: they stay in ARGV.
 *   Reply: the number of entries released.
 *   Each entry still pending under the consumer (checked again here: a peer may have claimed it
 *   since HELD) is re-added unchanged (no attempt charged), so a waiting peer gets it at once,
 *   except a job marked cancelling, which ends cancelled. Either way it leaves the consumer's
 *   pending list, so the listing moves on.
 *
 * RETIRE_END
 *   KEYS: stream, workers, registry.
 *   ARGV: group, consumer.
 *   Reply: 1 if the consumer was deleted, 0 if it still had pending entries (a peer's prune
 *   deletes it once they are reclaimed) or the group is missing.
 *   Removes the consumer's heartbeat either way.
 *
 * @module
 */
import { GATE, groupKeys } from "./_gate.ts";
import { PRELUDE, type ScriptQueue } from "./_prelude.ts";
import type { ScriptClient } from "./mod.ts";

/** Most pending entries listed and retired per step. */
const RETIRE_BATCH = 100;

/** The Lua of HELD (read-only). */
export const HELD: string = PRELUDE + `
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local ok, p = pcall(redis.call, 'XPENDING', stream, group, ARGV[3], '+', tonumber(ARGV[4]),
  consumer)
local out = {}
if not ok then return out end
for _, e in ipairs(p) do
  local f = fields_of(stream, e[1])
  out[#out + 1] = e[1]
  out[#out + 1] = (f and field(f, 'id')) or ''
end
return out
`;

/** The Lua of RETIRE. */
export const RETIRE: string = PRELUDE + GATE + `
local stream = KEYS[1]
local group, consumer, done, keep = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local released, k = 0, 3
ev_on(KEYS[2], ARGV[6], ARGV[7])
-- The lowest priority's stream comes with the group keys: a grouped entry given back keeps its
-- group's room, and one that ends here gives it back.
if ARGV[5] == 'g' then
  G = {KEYS[3], KEYS[4], KEYS[5], KEYS[6]}
  k = 7
end
for i = 8, #ARGV, 2 do
  local entry, id = ARGV[i], ARGV[i + 1]
  local rec = nil
  if id ~= '' then
    rec = KEYS[k]
    k = k + 1
  end
  local ok, p = pcall(redis.call, 'XPENDING', stream, group, entry, entry, 1)
  if ok and p[1] and p[1][2] == consumer then
    local state = rec and redis.call('HGET', rec, 'state')
    if state == 'cancelling' then
      -- Cancelled while we held it: it ends here instead of going back to the stream.
      local f, now = fields_of(stream, entry), now_ms()
      if f then hook(stream, f, 'cancelled', '', now) end
      redis.call('XACK', stream, group, entry)
      redis.call('XDEL', stream, entry)
      if G then g_free(stream, entry) end
      finish(rec, keep, now, done .. id, 'cancelled', '', '', true)
    else
      local new, f = readd(stream, group, entry, 0)
      if G and new then g_moved(entry, new) elseif G then g_free(stream, entry) end
      if new and state then redis.call('HSET', rec, 'state', 'waiting', 'entry', new) end
      if new and EV and id ~= '' then ev('waiting ' .. (field(f, 'task') or '?'), id) end
      released = released + 1
    end
  end
end
ev_flush()
return released
`;

/** The Lua of RETIRE_END. */
export const RETIRE_END: string = `
local stream, workers, group, consumer = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local deleted = 0
local ok, p = pcall(redis.call, 'XPENDING', stream, group, '-', '+', 1, consumer)
if ok and p[1] == nil then
  pcall(redis.call, 'XGROUP', 'DELCONSUMER', stream, group, consumer)
  deleted = 1
end
redis.call('ZREM', workers, consumer)
redis.call('HDEL', KEYS[3], consumer)
return deleted
`;

/**
 * The arguments of one HELD call, key count first.
 *
 * @param q The queue.
 * @param consumer The consumer.
 * @param start '-' for the first step, else '(' and the last entry id listed.
 * @param count The most entries to list.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function heldArgs(
  q: Pick<ScriptQueue, "keys" | "group">,
  consumer: string,
  start: string,
  count: number,
): string[] {
  return ["1", q.keys.stream, q.group, consumer, start, String(count)];
}

/**
 * The arguments of one RETIRE call, key count first.
 *
 * @param q The queue.
 * @param consumer The consumer.
 * @param held What HELD replied: flat pairs of entry id, job id ('' for none).
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function retireArgs(
  q: Pick<ScriptQueue, "keys" | "group" | "keepResult" | "pri" | "events">,
  consumer: string,
  held: readonly string[],
): string[] {
  const { keys } = q;
  const grouped = q.pri === undefined;
  const args = ["", keys.stream, keys.events];
  if (grouped) args.push(...groupKeys(keys));
  for (let i = 1; i < held.length; i += 2) if (held[i] !== "") args.push(keys.job(held[i]!));
  args[0] = String(args.length - 1);
  args.push(q.group, consumer, keys.done, String(q.keepResult), grouped ? "g" : "");
  args.push(q.events ? String(q.events) : "", keys.jobPrefix);
  for (const value of held) args.push(value);
  return args;
}

/**
 * The arguments of one RETIRE_END call, key count first.
 *
 * @param q The queue.
 * @param consumer The consumer.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function retireEndArgs(q: Pick<ScriptQueue, "keys" | "group">, consumer: string): string[] {
  return ["3", q.keys.stream, q.keys.workers, q.keys.registry, q.group, consumer];
}

/**
 * Retires a consumer: gives back everything it still has pending, RETIRE_BATCH entries a step,
 * then deletes it and its heartbeat.
 *
 * @param client A client with the scripts defined.
 * @param q The queue.
 * @param consumer The consumer to retire.
 * @returns How many entries were released (a cancelling job that ended is not counted).
 */
export async function retire(
  client: ScriptClient,
  q: Pick<ScriptQueue, "keys" | "group" | "keepResult" | "events">,
  consumer: string,
): Promise<number> {
  let released = 0;
  for (let start = "-";;) {
    const held = await client.sluiceHeld(heldArgs(q, consumer, start, RETIRE_BATCH));
    if (held.length === 0) break;
    released += await client.sluiceRetire(retireArgs(q, consumer, held));
    if (held.length < 2 * RETIRE_BATCH) break;
    start = `(${held[held.length - 2]}`;
  }
  await client.sluiceRetireEnd(retireEndArgs(q, consumer));
  return released;
}

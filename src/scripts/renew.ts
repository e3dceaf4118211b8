/**
 * RENEW: renews the leases of the deliveries a consumer holds, and its heartbeat, in one call
 * per tick. `renewArgs` builds its arguments.
 *
 * KEYS: stream, workers, registry, and for the lowest priority's stream the four group keys
 * (see _gate.ts).
 * ARGV: group, consumer, heartbeat ttl ms, the heartbeat record (JSON; '' for none), then pairs
 * of entry id, deliveries.
 * Reply: the entry ids no longer owned (`string[]`).
 *
 * Resets the idle time of every entry still owned (XCLAIM JUSTID does not bump the delivery
 * count).
 *
 * @module
 */
import { GATE, groupKeys } from "./_gate.ts";
import { PRELUDE, type ScriptQueue } from "./_prelude.ts";

/** The Lua of RENEW. */
export const RENEW: string = PRELUDE + GATE + `
local stream, workers, registry, group, consumer = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]
-- The lowest priority's stream comes with the group keys: an entry trimmed away while held
-- (XCLAIM drops it from the pending list and claims nothing) gives its group its room back.
if KEYS[4] then G = {KEYS[4], KEYS[5], KEYS[6], KEYS[7]} end
local lost = {}
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  local kept = false
  if owned(stream, group, id, consumer, ARGV[i + 1]) then
    kept = #redis.call('XCLAIM', stream, group, consumer, 0, id, 'JUSTID') == 1
    if not kept and G then g_free(stream, id) end
  end
  if not kept then lost[#lost + 1] = id end
end
-- At maxmemory the heartbeat is refused (ZADD may grow memory); the leases above still count.
pcall(redis.call, 'ZADD', workers, now_ms() + tonumber(ARGV[3]), consumer)
if ARGV[4] ~= '' then pcall(redis.call, 'HSET', registry, consumer, ARGV[4]) end
return lost
`;

/**
 * The arguments of one RENEW call, key count first.
 *
 * @param q The queue.
 * @param consumer The consumer that holds the deliveries.
 * @param heartbeatMs How long (ms) the consumer's heartbeat lasts.
 * @param held Each delivery with the delivery count it is held under (a `Map` of job to count).
 * @param record The consumer's heartbeat record, JSON ('' writes none).
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function renewArgs(
  q: Pick<ScriptQueue, "keys" | "group" | "pri">,
  consumer: string,
  heartbeatMs: number,
  held: Iterable<readonly [{ readonly entryId: string }, number]>,
  record = "",
): string[] {
  const grouped = q.pri === undefined ? groupKeys(q.keys) : [];
  const { stream, workers, registry } = q.keys;
  const args = [String(3 + grouped.length), stream, workers, registry, ...grouped];
  args.push(q.group, consumer, String(heartbeatMs), record);
  for (const [{ entryId }, deliveries] of held) args.push(entryId, String(deliveries));
  return args;
}

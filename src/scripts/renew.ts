/**
 * RENEW: renews the leases of the deliveries a consumer holds, and its heartbeat, in one call
 * per tick. `renewArgs` builds its arguments.
 *
 * KEYS: stream, workers.
 * ARGV: group, consumer, heartbeat ttl ms, then pairs of entry id, deliveries.
 * Reply: the entry ids no longer owned (`string[]`).
 *
 * Resets the idle time of every entry still owned (XCLAIM JUSTID does not bump the delivery
 * count).
 *
 * @module
 */
import { PRELUDE, type ScriptQueue } from "./_prelude.ts";

/** The Lua of RENEW. */
export const RENEW: string = PRELUDE + `
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
 * The arguments of one RENEW call, key count first.
 *
 * @param q The queue.
 * @param consumer The consumer that holds the deliveries.
 * @param heartbeatMs How long (ms) the consumer's heartbeat lasts.
 * @param held Each delivery with the delivery count it is held under (a `Map` of job to count).
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function renewArgs(
  q: Pick<ScriptQueue, "keys" | "group">,
  consumer: string,
  heartbeatMs: number,
  held: Iterable<readonly [{ readonly entryId: string }, number]>,
): string[] {
  const args = ["2", q.keys.stream, q.keys.workers, q.group, consumer, String(heartbeatMs)];
  for (const [{ entryId }, deliveries] of held) args.push(entryId, String(deliveries));
  return args;
}

/**
 * MARK_DEAD: ends the records of jobs a reclaim dead-lettered, and announces their outcome.
 * `markDeadArgs` builds its arguments.
 *
 * KEYS: one record per job.
 * ARGV: done channel prefix, keep ms, then pairs of job id, error.
 * The done channels are pub/sub channels, not keys: they stay in ARGV.
 * Reply: the number of records marked.
 *
 * @module
 */
import { PRELUDE, type ScriptQueue } from "./_prelude.ts";

/** The Lua of MARK_DEAD. */
export const MARK_DEAD: string = PRELUDE + `
local now = now_ms()
for i = 1, #KEYS do
  local id, err = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
  finish(KEYS[i], tonumber(ARGV[2]), now, ARGV[1] .. id, 'dead', err, 'delivery-limit', false)
end
return #KEYS
`;

/**
 * The arguments of one MARK_DEAD call, key count first.
 *
 * @param q The queue.
 * @param ids The job ids (none empty).
 * @param error The error text each record gets.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function markDeadArgs(
  q: Pick<ScriptQueue, "keys" | "keepResult">,
  ids: readonly string[],
  error: string,
): string[] {
  const { keys } = q;
  const args = [String(ids.length)];
  for (const id of ids) args.push(keys.job(id));
  args.push(keys.done, String(q.keepResult));
  for (const id of ids) args.push(id, error);
  return args;
}

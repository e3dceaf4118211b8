/**
 * CANCELLED: which of these jobs were cancelled? One look at their records before jobs are
 * handed out. `cancelledArgs` builds its arguments.
 *
 * KEYS: one record per job.
 * ARGV: none.
 * Reply: the 1-based positions of the records marked cancelling or cancelled (usually none).
 *
 * @module
 */
import type { Keys } from "../keys.ts";

/** The Lua of CANCELLED (read-only). */
export const CANCELLED: string = `
local out = {}
for i = 1, #KEYS do
  local state = redis.call('HGET', KEYS[i], 'state')
  if state == 'cancelling' or state == 'cancelled' then out[#out + 1] = i end
end
return out
`;

/**
 * The arguments of one CANCELLED call, key count first.
 *
 * @param keys The queue's keys.
 * @param jobs The jobs to look at.
 * @returns The flat argument list: key count, KEYS.
 */
export function cancelledArgs(keys: Keys, jobs: readonly { readonly id: string }[]): string[] {
  const args = [String(jobs.length)];
  for (const job of jobs) args.push(keys.job(job.id));
  return args;
}

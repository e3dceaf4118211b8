/**
 * PROGRESS: stores a running job's last progress in its record. `progressArgs` builds its
 * arguments.
 *
 * KEYS: the job's record.
 * ARGV: the progress, as JSON.
 * Reply: 1 if stored, 0 if the record is gone or the job has ended (a late write changes
 * nothing, and never makes a record for a job that keeps none).
 *
 * @module
 */
import type { Keys } from "../keys.ts";

/** The Lua of PROGRESS. */
export const PROGRESS: string = `
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'waiting' and state ~= 'cancelling' then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[1])
return 1
`;

/**
 * The arguments of one PROGRESS call, key count first.
 *
 * @param keys The queue's keys.
 * @param id The job id.
 * @param json The progress as JSON.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function progressArgs(keys: Keys, id: string, json: string): string[] {
  return ["1", keys.job(id), json];
}

/**
 * PROGRESS: stores a running job's last progress in its record. `progressArgs` builds its
 * arguments.
 *
 * KEYS: the job's record, events.
 * ARGV: the progress, as JSON; the events cap ('' for none: else event `progress`); job id.
 * Reply: 1 if stored, 0 if the record is gone or the job has ended (a late write changes
 * nothing, and never makes a record for a job that keeps none).
 *
 * @module
 */
import type { Keys } from "../keys.ts";
import { PRELUDE } from "./_prelude.ts";

/** The Lua of PROGRESS. */
export const PROGRESS: string = PRELUDE + `
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'waiting' and state ~= 'cancelling' then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[1])
ev_on(KEYS[2], ARGV[2], '')
if EV then
  ev('progress ' .. rec_task(KEYS[1]) .. ' ' .. ARGV[1], ARGV[3])
  ev_flush()
end
return 1
`;

/**
 * The arguments of one PROGRESS call, key count first.
 *
 * @param keys The queue's keys.
 * @param id The job id.
 * @param json The progress as JSON.
 * @param events The events cap (0: no events).
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function progressArgs(keys: Keys, id: string, json: string, events = 0): string[] {
  return ["2", keys.job(id), keys.events, json, events > 0 ? String(events) : "", id];
}

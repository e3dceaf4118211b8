/**
 * PAUSE: pauses or resumes a queue, and tells its workers. `pauseArgs` builds its arguments.
 *
 * KEYS: the queue's paused flag.
 * ARGV: the pause channel, "1" to pause or "0" to resume.
 * The pause channel is a pub/sub channel, not a key: it stays in ARGV (it carries the queue's
 * hash tag, so on Redis Cluster it is a shard channel of the queue's slot).
 * Reply: 1 if the state changed, 0 if the queue was already in it.
 *
 * The flag is written before the message goes out, in one script: a worker that missed the
 * message (not yet subscribed, or reconnecting) finds the state in the flag. The message is
 * published even when nothing changed, which costs nothing and repairs a worker that somehow
 * missed the first one.
 *
 * @module
 */
import type { Keys } from "../keys.ts";
import { PRELUDE } from "./_prelude.ts";

/** The Lua of PAUSE. */
export const PAUSE: string = PRELUDE + `
local changed
if ARGV[2] == '1' then
  changed = redis.call('SET', KEYS[1], '1', 'GET') == false and 1 or 0
else
  changed = redis.call('DEL', KEYS[1])
end
publish(ARGV[1], ARGV[2])
return changed
`;

/**
 * The arguments of one PAUSE call, key count first.
 *
 * @param keys The queue's keys.
 * @param paused True to pause, false to resume.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function pauseArgs(keys: Keys, paused: boolean): string[] {
  return ["1", keys.paused, keys.pause, paused ? "1" : "0"];
}

/**
 * WAITING: registers (or refreshes) a `result()` waiter, so settles announce outcomes while it
 * waits. `waitingArgs` builds its arguments.
 *
 * KEYS: the queue's waiters zset.
 * ARGV: the waiter's token, how long (ms) the registration lasts unless refreshed.
 * Reply: 1.
 *
 * A waiter is a member scored by its expiry on Redis's clock: adding it again is harmless (a
 * resent command, a refresh, a new registration after Redis lost it), a waiter that crashed
 * expires, and expired members are removed here. SETTLE counts the members not yet expired.
 *
 * @module
 */
import type { Keys } from "../keys.ts";

/** The Lua of WAITING. */
export const WAITING: string = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
`;

/**
 * The arguments of one WAITING call, key count first.
 *
 * @param keys The queue's keys.
 * @param token The waiter's token, unique to one `result()` call.
 * @param ttl How long (ms) the registration lasts unless refreshed.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function waitingArgs(keys: Keys, token: string, ttl: number): string[] {
  return ["1", keys.waiters, token, String(ttl)];
}

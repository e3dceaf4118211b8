/**
 * CANCEL: cancels one job by id, whatever state it is in. `cancelArgs` builds its arguments.
 *
 * KEYS: stream, delayed, payloads, record.
 * ARGV: group, done channel prefix, keep ms, cancel channel, job id.
 * The done and cancel channels are pub/sub channels, not keys: they stay in ARGV.
 * Reply: the state before ('unknown' if there is no record); the action taken follows from it.
 *
 * A delayed or retrying job is removed; a waiting job not yet delivered is deleted from the
 * stream; either way it never runs and ends cancelled. A job a worker holds is marked
 * cancelling and its owner told, over pub/sub, to stop it (reply 'active').
 *
 * @module
 */
import { PRELUDE, type ScriptQueue } from "./_prelude.ts";

/** The Lua of CANCEL. */
export const CANCEL: string = PRELUDE + `
local stream, delayed, payloads, rec = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, done, keep, id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[5]
local state = redis.call('HGET', rec, 'state')
if not state then return 'unknown' end
if state == 'completed' or state == 'dead' or state == 'cancelled' then return state end
local now = now_ms()
if state == 'delayed' or state == 'retrying' then
  if redis.call('ZREM', delayed, id) == 1 then
    redis.call('HDEL', payloads, id)
    redis.call('HDEL', rec, 'due')
    finish(rec, keep, now, done .. id, 'cancelled', '', '', true)
    return state
  end
  state = 'waiting' -- promoted meanwhile: look at the stream
end
local entry = redis.call('HGET', rec, 'entry')
if entry then
  local ok, p = pcall(redis.call, 'XPENDING', stream, group, entry, entry, 1)
  if not (ok and p[1]) then
    redis.call('XDEL', stream, entry)
    finish(rec, keep, now, done .. id, 'cancelled', '', '', true)
    return 'waiting'
  end
end
redis.call('HSET', rec, 'state', 'cancelling')
publish(ARGV[4], id .. '\\n' .. (entry or ''))
return 'active'
`;

/**
 * The arguments of one CANCEL call, key count first.
 *
 * @param q The queue.
 * @param id The job id.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function cancelArgs(
  q: Pick<ScriptQueue, "keys" | "group" | "keepResult">,
  id: string,
): string[] {
  const { keys } = q;
  return [
    "4",
    keys.stream,
    keys.delayed,
    keys.payloads,
    keys.job(id),
    q.group,
    keys.done,
    String(q.keepResult),
    keys.cancel,
    id,
  ];
}

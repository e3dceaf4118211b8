/**
 * CANCEL: cancels one job by id, whatever state it is in. `cancelArgs` builds its arguments.
 *
 * KEYS: stream (the lowest priority's), delayed, payloads, record, events, the four group keys
 * (see _gate.ts), then the stream of every other priority (none without priorities).
 * ARGV: group, done channel prefix, keep ms, cancel channel, job id, scope (the only group whose
 * jobs may be cancelled, '' for any), the events cap ('' for none: a job cancelled here gets
 * event `cancelled`; one a worker holds gets it when its worker settles it).
 * The done and cancel channels are pub/sub channels, not keys: they stay in ARGV.
 * Reply: the state before ('unknown' if there is no record); the action taken follows from it.
 *
 * A delayed or retrying job is removed; a waiting job not yet delivered is deleted from the
 * stream; either way it never runs and ends cancelled. A job a worker holds is marked
 * cancelling and its owner told, over pub/sub, to stop it (reply 'active'). A grouped job
 * waiting in its group's line is taken out of it; one in the stream gives its room back.
 *
 * With priorities, the record's entry id may name entries in several streams (each stream
 * makes its own ids): the job's is the one whose field `id` is the job's, so only that stream
 * is looked at. An entry in no stream any more is not held by anyone (pending entries are not
 * trimmed).
 *
 * @module
 */
import { GATE, GROUP_KEYS, groupKeys } from "./_gate.ts";
import { PRELUDE, type ScriptQueue } from "./_prelude.ts";
import type { Lanes } from "../priority.ts";

/** The Lua of CANCEL. */
export const CANCEL: string = PRELUDE + GATE + `
local stream, delayed, payloads, rec = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
G = {KEYS[6], KEYS[7], KEYS[8], KEYS[9]}
local group, done, keep, id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[5]
ev_on(KEYS[5], ARGV[7], string.sub(rec, 1, #rec - #id))
-- Every way out writes the events collected (a cancelled job's) first.
local function out(state)
  ev_flush()
  return state
end
local state = redis.call('HGET', rec, 'state')
if not state then return 'unknown' end
-- A scoped producer (queue.forGroup) cancels its own group's jobs only: others are unknown.
if ARGV[6] ~= '' and redis.call('HGET', rec, 'group') ~= ARGV[6] then return 'unknown' end
if state == 'completed' or state == 'dead' or state == 'cancelled' then return state end
local now = now_ms()
if state == 'delayed' or state == 'retrying' then
  if redis.call('ZREM', delayed, id) == 1 then
    local payload = redis.call('HGET', payloads, id)
    local ok, f = pcall(cjson.decode, payload or '')
    if ok and type(f) == 'table' then hook(stream, f, 'cancelled', '', now) end
    redis.call('HDEL', payloads, id)
    redis.call('HDEL', rec, 'due')
    finish(rec, keep, now, done .. id, 'cancelled', '', '', true)
    return out(state)
  end
  state = 'waiting' -- promoted meanwhile: look at the stream
end
local entry = redis.call('HGET', rec, 'entry')
local function held(at)
  local ok, p = pcall(redis.call, 'XPENDING', at, group, entry, entry, 1)
  return ok and p[1] ~= nil
end
local g = redis.call('HGET', rec, 'group')
if g then
  -- A grouped job waits in its group's line, or in the lowest priority's stream under the
  -- entry its slot names (the record's entry is not kept when the gate moves it in later).
  local gone, f = g_unwait(g, redis.call('HGET', rec, 'place'), id)
  if gone then
    hook(stream, f, 'cancelled', '', now)
    redis.call('HDEL', rec, 'place')
    finish(rec, keep, now, done .. id, 'cancelled', '', '', true)
    return out('waiting')
  end
  entry = redis.call('HGET', G[4], 'j:' .. id) or entry
  if entry and not held(stream) then
    local f = fields_of(stream, entry)
    if f then hook(stream, f, 'cancelled', '', now) end
    redis.call('XDEL', stream, entry)
    g_free(stream, entry)
    finish(rec, keep, now, done .. id, 'cancelled', '', '', true)
    return out('waiting')
  end
elseif entry and #KEYS == 9 then
  if not held(stream) then
    local f = fields_of(stream, entry)
    if f then hook(stream, f, 'cancelled', '', now) end
    redis.call('XDEL', stream, entry)
    finish(rec, keep, now, done .. id, 'cancelled', '', '', true)
    return out('waiting')
  end
elseif entry then
  local lanes = {stream}
  for k = 10, #KEYS do lanes[#lanes + 1] = KEYS[k] end
  local at = nil
  for _, lane in ipairs(lanes) do
    local r = redis.call('XRANGE', lane, entry, entry)
    if r[1] and field(r[1][2], 'id') == id then at = lane break end
  end
  -- An entry in no stream any more is held by nobody (pending entries are never trimmed);
  -- another job's entry with the same id in some stream must not count.
  local pending = at ~= nil and held(at)
  if not pending then
    if at then
      hook(stream, fields_of(at, entry), 'cancelled', '', now)
      redis.call('XDEL', at, entry)
    end
    finish(rec, keep, now, done .. id, 'cancelled', '', '', true)
    return out('waiting')
  end
end
redis.call('HSET', rec, 'state', 'cancelling')
publish(ARGV[4], id .. '\\n' .. (entry or ''))
return 'active'
`;

/**
 * The arguments of one CANCEL call, key count first.
 *
 * @param q The queue: its keys, group, keepResult and priorities.
 * @param id The job id.
 * @param scope The only group whose jobs may be cancelled (a scoped producer's), if any.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function cancelArgs(
  q: Pick<ScriptQueue, "keys" | "group" | "keepResult" | "events"> & { readonly lanes: Lanes },
  id: string,
  scope?: string,
): string[] {
  const { keys, lanes: { streams } } = q;
  // The other priorities: every lane but the last (the lowest, which is keys.stream).
  const others = streams.slice(0, -1);
  return [
    String(5 + GROUP_KEYS + others.length),
    keys.stream,
    keys.delayed,
    keys.payloads,
    keys.job(id),
    keys.events,
    ...groupKeys(keys),
    ...others,
    q.group,
    keys.done,
    String(q.keepResult),
    keys.cancel,
    id,
    scope ?? "",
    q.events ? String(q.events) : "",
  ];
}

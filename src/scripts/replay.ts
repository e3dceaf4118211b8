/**
 * REPLAY: puts dead letters back in their priority's stream with attempt 1. `replayArgs`
 * builds its arguments.
 *
 * KEYS: dead, stream (the lowest priority's), the four group keys (see _gate.ts), events, then
 * the stream of every other priority (none without priorities), then the record of each letter
 * that has a job id, in order.
 * ARGV: live ms; n, the number of other priorities; their n names, in the order of their
 * streams; the events cap ('' for none: else each letter with a job id gets `waiting`); then
 * pairs of dead entry id, job id ('' for a letter without one: it gets no
 * record, since no record key can be named for it without colliding with some job's).
 * Reply: the number replayed.
 *
 * A letter goes back to the stream of its field `pri` (which it keeps); without it, or with a
 * name that is not one of the n, to the lowest priority's stream. A letter with field group
 * passes its group's gate instead, as at enqueue, and its record keeps the group.
 *
 * Each letter leaves the dead stream in the same step, so replaying the same letter twice (from
 * two processes, say) runs it once.
 *
 * @module
 */
import { RECORD_TTL_MS } from "../keys.ts";
import { GATE, groupKeys } from "./_gate.ts";
import { PRELUDE, type ScriptQueue } from "./_prelude.ts";
import type { Lanes } from "../priority.ts";

/** The Lua of REPLAY. */
export const REPLAY: string = PRELUDE + GATE + `
local dead, stream, live, n = KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2])
G = {KEYS[3], KEYS[4], KEYS[5], KEYS[6]}
ev_on(KEYS[7], ARGV[3 + n], '')
local lanes = nil -- priority name -> its stream, with priorities
if n > 0 then
  lanes = {}
  for j = 1, n do lanes[ARGV[j + 2]] = KEYS[j + 7] end
end
local replayed, k = 0, 8 + n
for i = 4 + n, #ARGV, 2 do
  local dead_id, id = ARGV[i], ARGV[i + 1]
  local rec = nil
  if id ~= '' then
    rec = KEYS[k]
    k = k + 1
  end
  local r = redis.call('XRANGE', dead, dead_id, dead_id)
  if r[1] then
    local f, kept = r[1][2], {}
    for j = 1, #f, 2 do
      local name = f[j]
      if name ~= 'error' and name ~= 'reason' and name ~= 'failed_at' then
        kept[#kept + 1] = name
        kept[#kept + 1] = (name == 'attempt') and '1' or f[j + 1]
      end
    end
    -- A grouped job passes its group's gate, as at enqueue.
    local g, entry, place = field(kept, 'group'), nil, nil
    if g then
      entry, place = g_admit(stream, g, kept)
    else
      local target = stream
      if lanes then target = lanes[field(kept, 'pri') or ''] or stream end
      entry = redis.call('XADD', target, '*', unpack(kept))
    end
    redis.call('XDEL', dead, dead_id)
    if rec then
      redis.call('DEL', rec)
      -- The record enqueue writes (see enqueue.ts): field job is "<enq> <task>".
      local job = (field(kept, 'enq') or '') .. ' ' .. (field(kept, 'task') or '')
      if not g then
        redis.call('HSET', rec, 'state', 'waiting', 'entry', entry, 'job', job)
      elseif entry then
        redis.call('HSET', rec, 'state', 'waiting', 'entry', entry, 'job', job, 'group', g)
      else
        redis.call('HSET', rec, 'state', 'waiting', 'job', job, 'group', g, 'place', place)
      end
      redis.call('PEXPIRE', rec, live)
    end
    if EV and id ~= '' then ev('waiting ' .. (field(kept, 'task') or '?'), id) end
    replayed = replayed + 1
  end
end
ev_flush()
return replayed
`;

/**
 * The arguments of one REPLAY call, key count first.
 *
 * @param q The queue: its keys and priorities.
 * @param letters The dead letters: `deadId`, and the job `id` ('' if the letter has none).
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function replayArgs(
  q: Pick<ScriptQueue, "keys" | "events"> & { readonly lanes: Lanes },
  letters: readonly { readonly deadId: string; readonly id: string }[],
): string[] {
  const { keys, lanes: { streams, labels } } = q;
  // The other priorities: every lane but the last (the lowest, which is keys.stream).
  const others = streams.length - 1;
  const args = ["", keys.dead, keys.stream, ...groupKeys(keys), keys.events];
  for (let lane = 0; lane < others; lane++) args.push(streams[lane]!);
  for (const { id } of letters) if (id !== "") args.push(keys.job(id));
  args[0] = String(args.length - 1);
  args.push(String(RECORD_TTL_MS), String(others));
  for (let lane = 0; lane < others; lane++) args.push(labels[lane]!);
  args.push(q.events ? String(q.events) : "");
  for (const { deadId, id } of letters) args.push(deadId, id);
  return args;
}

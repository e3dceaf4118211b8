/**
 * RECLAIM: claims idle deliveries of dead peers with XAUTOCLAIM, dead-letters crash loops, and
 * now and then prunes dead consumers. `reclaimArgs` builds its arguments.
 *
 * KEYS: stream, dead, workers, registry, events, and for the lowest priority's stream the four
 * group keys (see _gate.ts): a grouped entry trimmed away or dead-lettered here gives its group
 * its room back.
 * ARGV: group, consumer, min idle ms, cursor, count, max deliveries, prune (0/1), max dead, the
 * stream's priority name ('' for the lowest: written in field pri of dead letters), the events
 * cap ('' for none): each claimed job's event is `stalled`, each dead-lettered one's `dead`.
 * Reply (`ReclaimReply`): { next cursor, { entry id, deliveries, fields }..., deleted entry ids,
 * dead-lettered job ids ('' for an entry without one) }.
 *
 * Entries delivered more than max deliveries times are dead-lettered with reason
 * `delivery-limit`. The caller then marks the dead jobs' records with MARK_DEAD: their keys are
 * only known now. With prune, heartbeats that ran out are deleted with their records, and
 * consumers with nothing pending and no live heartbeat are deleted.
 *
 * @module
 */
import { GATE, groupKeys } from "./_gate.ts";
import { PRELUDE, type ScriptQueue } from "./_prelude.ts";

/** What RECLAIM replies: cursor, claimed entries, deleted entry ids, dead-lettered job ids. */
export type ReclaimReply = [
  cursor: string,
  claimed: [entryId: string, deliveries: number, fields: string[]][],
  deleted: string[],
  buried: string[],
];

/** One reclaim step's parameters. */
export interface ReclaimStep {
  /** Deliveries idle at least this long (ms) are claimed. */
  minIdle: number;
  /** Where the previous step's XAUTOCLAIM left off ("0-0" to start over). */
  cursor: string;
  /** The most entries to claim. */
  count: number;
  /** Deliveries beyond this go to the dead letters; `Infinity` turns the check off. */
  maxDeliveries: number;
  /** Also delete consumers with nothing pending and no live heartbeat. */
  prune: boolean;
}

/** The Lua of RECLAIM. */
export const RECLAIM: string = PRELUDE + GATE + `
local stream, dead, workers, registry = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
-- The lowest priority's stream, which holds the grouped jobs, comes with the group keys: an
-- entry trimmed away or dead-lettered here gives its group its room back.
if KEYS[6] then G = {KEYS[6], KEYS[7], KEYS[8], KEYS[9]} end
ev_on(KEYS[5], ARGV[10], '')
local group, consumer, min_idle = ARGV[1], ARGV[2], tonumber(ARGV[3])
local max_deliveries, pri = tonumber(ARGV[6]), ARGV[9]
local now = now_ms()
local r = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle, ARGV[4], 'COUNT', ARGV[5])
local claimed, deleted, buried = {}, r[3] or {}, {}
if G then
  for _, id in ipairs(deleted) do g_free(stream, id) end
end
for _, e in ipairs(r[2]) do
  local id, fields = e[1], e[2]
  if not fields then
    -- Redis 6.2 returns trimmed entries with nil fields instead of listing them in r[3].
    redis.call('XACK', stream, group, id)
    deleted[#deleted + 1] = id
    if G then g_free(stream, id) end
  else
    local n = redis.call('XPENDING', stream, group, id, id, 1)[1][4]
    if n > max_deliveries then
      local why = 'delivered ' .. n .. ' times, more than maxDeliveries ' .. ARGV[6]
      hook(stream, fields, 'dead', ',"error":' .. cjson.encode(why) ..
        ',"reason":"delivery-limit"', now)
      bury(stream, dead, group, id, with_pri(fields, pri),
        'delivered ' .. n .. ' times, more than maxDeliveries ' .. ARGV[6], 'delivery-limit', now,
        tonumber(ARGV[8]))
      buried[#buried + 1] = field(fields, 'id') or ''
      if G then g_free(stream, id) end
      if EV and buried[#buried] ~= '' then
        ev('dead ' .. (field(fields, 'task') or '?') .. ' delivery-limit', buried[#buried])
      end
    else
      claimed[#claimed + 1] = {id, n, fields}
      local job = field(fields, 'id')
      if EV and job then ev('stalled ' .. (field(fields, 'task') or '?'), job) end
    end
  end
end
if ARGV[7] == '1' then
  local gone = redis.call('ZRANGEBYSCORE', workers, '-inf', now, 'LIMIT', 0, 1000)
  for i = 1, #gone, 500 do
    redis.call('HDEL', registry, unpack(gone, i, math.min(i + 499, #gone)))
    redis.call('ZREM', workers, unpack(gone, i, math.min(i + 499, #gone)))
  end
  local consumers = redis.call('XINFO', 'CONSUMERS', stream, group)
  for _, c in ipairs(consumers) do
    local info = {}
    for j = 1, #c, 2 do info[c[j]] = c[j + 1] end
    if info['pending'] == 0 and info['idle'] > min_idle and info['name'] ~= consumer
      and not redis.call('ZSCORE', workers, info['name']) then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, info['name'])
    end
  end
end
ev_flush()
return {r[1], claimed, deleted, buried}
`;

/**
 * The arguments of one RECLAIM call, key count first.
 *
 * @param q The queue.
 * @param consumer The consumer that claims.
 * @param step The step's parameters.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function reclaimArgs(
  q: Pick<ScriptQueue, "keys" | "group" | "maxDead" | "pri" | "events">,
  consumer: string,
  step: ReclaimStep,
): string[] {
  const { keys } = q;
  const grouped = q.pri === undefined ? groupKeys(keys) : [];
  return [
    String(5 + grouped.length),
    keys.stream,
    keys.dead,
    keys.workers,
    keys.registry,
    keys.events,
    ...grouped,
    q.group,
    consumer,
    String(step.minIdle),
    step.cursor,
    String(step.count),
    step.maxDeliveries === Infinity ? "9007199254740991" : String(step.maxDeliveries),
    step.prune ? "1" : "0",
    String(q.maxDead),
    q.pri ?? "",
    q.events ? String(q.events) : "",
  ];
}

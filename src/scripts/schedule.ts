/**
 * The schedule scripts: FIRE, SCHEDULE_SET (upsert), SCHEDULE_REMOVE, SCHEDULE_PAUSE. The
 * design is in schedule.ts; the keys are `schedules` (hash id → definition JSON), `ticks`
 * (zset id → next tick ms) and `runs` (hash id → run state JSON), all under the queue's tag.
 *
 * FIRE
 *   KEYS: stream (the schedule's priority's), ticks, schedules, runs, the record of the
 *   schedule's last job, events, then one record per tick to fire.
 *   ARGV: schedule id, the tick DUE reported (the fence), the definition DUE reported (the
 *   fence), the following tick (ms; -1: none, the schedule ends), overlap ('1' or '0'), record
 *   ms to live, task, enq, the events cap ('' for none: else each job fired gets `waiting`);
 *   then per tick: its time (ms) and its entry's fields as a JSON array.
 *   Reply: { fired, skipped }, or { -1, 0 } if the fence failed: another worker fired this tick,
 *   or the schedule was changed, paused or removed since DUE, so nothing is written.
 *   A tick's job is written like an enqueue with its deterministic id (`<schedule>@<tick ms>`):
 *   skipped if its record exists (dedup), or, with overlap '0', while the last job's record
 *   says waiting, delayed or active (counted in `skipped`).
 *
 * SCHEDULE_SET
 *   KEYS: schedules, ticks, runs.
 *   ARGV: id, definition JSON, its first tick (ms, from Redis TIME), wake channel.
 *   Reply: 0 if the same definition was stored already (left alone, its next tick kept: ten
 *   workers declaring one static schedule make one schedule), 1 replaced, 2 created.
 *
 * SCHEDULE_REMOVE
 *   KEYS: schedules, ticks, runs. ARGV: id. Reply: 1 if it existed, else 0.
 *
 * SCHEDULE_PAUSE
 *   KEYS: schedules, ticks, runs.
 *   ARGV: id, '1' to pause or '0' to resume, the next tick if resumed (ms), wake channel.
 *   Reply: 1 if the schedule exists, else 0. Pausing takes its tick off `ticks`; resuming puts
 *   the next tick from now back.
 *
 * @module
 */
import type { Keys } from "../keys.ts";
import { PRELUDE } from "./_prelude.ts";

/** Lua: a schedule's run state, decoded ({} if none or unreadable). */
const STATE = `
local function state_of(runs, id)
  local raw = redis.call('HGET', runs, id)
  if raw then
    local ok, s = pcall(cjson.decode, raw)
    if ok and type(s) == 'table' then return s end
  end
  return {}
end
`;

/** The Lua of FIRE. */
export const FIRE: string = PRELUDE + STATE + `
local stream, ticks, schedules, runs, prev = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, expected, spec, follow = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local overlap, live, task, enq = ARGV[5] == '1', ARGV[6], ARGV[7], ARGV[8]
ev_on(KEYS[6], ARGV[9], '')
local score = redis.call('ZSCORE', ticks, id)
if not score or tonumber(score) ~= expected or redis.call('HGET', schedules, id) ~= spec then
  return {-1, 0}
end
local state = state_of(runs, id)
local pending = false
if not overlap then
  local st = redis.call('HGET', prev, 'state')
  pending = st == 'waiting' or st == 'delayed' or st == 'active'
end
local fired, skipped = 0, 0
for k = 7, #KEYS do
  local rec = KEYS[k]
  local a = 10 + (k - 7) * 2
  local tick, fields = tonumber(ARGV[a]), ARGV[a + 1]
  if redis.call('EXISTS', rec) == 1 then
    -- dedup: this tick's job exists already
  elseif pending then
    skipped = skipped + 1
  else
    local f = cjson.decode(fields)
    local entry = redis.call('XADD', stream, '*', unpack(f))
    -- The record enqueue writes (see enqueue.ts): field job is "<enq> <task>".
    redis.call('HSET', rec, 'state', 'waiting', 'entry', entry, 'job', enq .. ' ' .. task)
    redis.call('PEXPIRE', rec, live)
    fired = fired + 1
    if EV then ev('waiting ' .. task, field(f, 'id')) end
    state.job = field(f, 'id')
    state.last = tick
    if not overlap then pending = true end
  end
end
state.skipped = (tonumber(state.skipped) or 0) + skipped
redis.call('HSET', runs, id, cjson.encode(state))
if follow >= 0 then
  redis.call('ZADD', ticks, follow, id)
else
  redis.call('ZREM', ticks, id)
end
ev_flush()
return {fired, skipped}
`;

/** The Lua of SCHEDULE_SET. */
export const SCHEDULE_SET: string = PRELUDE + STATE + `
local schedules, ticks, runs = KEYS[1], KEYS[2], KEYS[3]
local id, spec, first, wake = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local old = redis.call('HGET', schedules, id)
if old == spec then return 0 end
redis.call('HSET', schedules, id, spec)
if not state_of(runs, id).paused then
  redis.call('ZADD', ticks, first, id)
  publish(wake, tostring(math.max(0, first - now_ms())))
end
if old then return 1 end
return 2
`;

/** The Lua of SCHEDULE_REMOVE. */
export const SCHEDULE_REMOVE: string = PRELUDE + `
local existed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return existed
`;

/** The Lua of SCHEDULE_PAUSE. */
export const SCHEDULE_PAUSE: string = PRELUDE + STATE + `
local schedules, ticks, runs = KEYS[1], KEYS[2], KEYS[3]
local id, pause, first, wake = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3]), ARGV[4]
if redis.call('HEXISTS', schedules, id) == 0 then return 0 end
local state = state_of(runs, id)
if pause then
  state.paused = true
  redis.call('ZREM', ticks, id)
elseif state.paused then
  state.paused = nil
  if first >= 0 then
    redis.call('ZADD', ticks, first, id)
    publish(wake, tostring(math.max(0, first - now_ms())))
  end
end
redis.call('HSET', runs, id, cjson.encode(state))
return 1
`;

/** One tick of a FIRE call: its time and its entry's fields. */
export interface FireTick {
  /** The tick time, ms since epoch. */
  readonly at: number;
  /** The job id, `<schedule>@<tick ms>`. */
  readonly id: string;
  /** The entry's wire fields, flat. */
  readonly fields: readonly string[];
}

/**
 * The arguments of one FIRE call, key count first.
 *
 * @param keys The queue's keys.
 * @param fire The schedule and its ticks; `stream` is its priority's stream.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function fireArgs(
  keys: Keys,
  fire: {
    id: string;
    stream: string;
    expected: number;
    spec: string;
    follow: number;
    overlap: boolean;
    last: string | undefined;
    live: number;
    task: string;
    enq: number;
    ticks: readonly FireTick[];
    events?: number;
  },
): string[] {
  const args = [
    String(6 + fire.ticks.length),
    fire.stream,
    keys.ticks,
    keys.schedules,
    keys.runs,
    keys.job(fire.last ?? `${fire.id}@0`),
    keys.events,
  ];
  for (const tick of fire.ticks) args.push(keys.job(tick.id));
  args.push(
    fire.id,
    String(fire.expected),
    fire.spec,
    String(fire.follow),
    fire.overlap ? "1" : "0",
    String(fire.live),
    fire.task,
    String(fire.enq),
    fire.events ? String(fire.events) : "",
  );
  for (const tick of fire.ticks) args.push(String(tick.at), JSON.stringify(tick.fields));
  return args;
}

/** The arguments of SCHEDULE_SET, key count first. */
export function scheduleSetArgs(keys: Keys, id: string, spec: string, first: number): string[] {
  return ["3", keys.schedules, keys.ticks, keys.runs, id, spec, String(first), keys.wake];
}

/** The arguments of SCHEDULE_REMOVE, key count first. */
export function scheduleRemoveArgs(keys: Keys, id: string): string[] {
  return ["3", keys.schedules, keys.ticks, keys.runs, id];
}

/** The arguments of SCHEDULE_PAUSE, key count first. */
export function schedulePauseArgs(
  keys: Keys,
  id: string,
  pause: boolean,
  first: number,
): string[] {
  return [
    "3",
    keys.schedules,
    keys.ticks,
    keys.runs,
    id,
    pause ? "1" : "0",
    String(first),
    keys.wake,
  ];
}

/**
 * TAKE and HOLD: rate limits, enforced in Redis when a worker is about to start jobs.
 *
 * A scope is what one limit counts: `q` (the queue), `t:<task>` (one task), `g:<group>` (one
 * group). A scope with a limit keeps, scored by time (ms, Redis's clock):
 * - its starts: a zset trimmed to the last interval, one member per grant, "<count>:<tag>"
 *   (the tag names the delivery: lane, entry id and delivery count; the count is 1, or more
 *   with starts granted ahead), and their total in a counter beside it;
 * - its bookings: a zset of the jobs put off (their ids), scored by when they come back.
 *
 * TAKE: KEYS: holds, then per scope its starts, their count and its bookings.
 * ARGV: scope count S; per scope: name, limit (0: no limit, a scope only paused), interval ms;
 * then 4 values per job: job id, start tag, the job's scopes as 1-based numbers joined by spaces,
 * and how many starts to grant ahead with it.
 * Reply: Redis's time (ms), then one number per job: 0 if it may start now (its start is logged
 * in each of its scopes), -k if it may and k more starts were granted ahead (logged now too:
 * only while each scope's last interval holds at most half its limit with them, and no job is
 * booked), else the time (ms, Redis's clock) it is booked for: the caller defers it to then.
 *
 * Exact on Redis's clock: a job starts only if, in each of its scopes, fewer than `limit`
 * starts lie in the last interval, and the scope is not paused. Bookings only plan: a new job
 * waits behind every booking of its scopes, at the first time the plan (starts, then bookings)
 * leaves room, so jobs put off earlier start first and come back spread over the windows they
 * will fit in. A job back from its booking needs room among the starts alone; if a late start
 * took it, it is booked again for when that start leaves the window, a few ms on. A booking is
 * kept a minute past its interval for a job that comes back late (behind a backlog).
 *
 * HOLD: KEYS: holds. ARGV: channel, ms, scope names. Pauses each scope until Redis TIME + ms
 * (an existing later pause stands), announces "<scope> <until> <now>" on the channel, and
 * replies with the time the last pause ends and Redis's time.
 *
 * @module
 */
import type { Keys } from "../keys.ts";
import { PRELUDE } from "./_prelude.ts";

/** The Lua of TAKE. */
export const TAKE: string = PRELUDE + `
local BOOKED_MS = 60000
local holds = KEYS[1]
local now = now_ms()
local S = tonumber(ARGV[1])
local names, limit, interval, log, tally, book = {}, {}, {}, {}, {}, {}
local ng, nb, lastb, pause, adds, single = {}, {}, {}, {}, {}, {}
-- A member of the starts zset stands for <count> starts: "<count>:<tag>".
local function count(m)
  return tonumber(string.match(m, '^(%d+):')) or 1
end
for s = 1, S do
  local i = 2 + (s - 1) * 3
  names[s], limit[s], interval[s] = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  log[s], tally[s], book[s] = KEYS[s * 3 - 1], KEYS[s * 3], KEYS[s * 3 + 1]
  adds[s] = {}
  if limit[s] > 0 then
    local cut = now - interval[s]
    local old = redis.call('ZRANGEBYSCORE', log[s], '-inf', cut)
    if #old > 0 then
      local gone = 0
      for _, m in ipairs(old) do gone = gone + count(m) end
      redis.call('ZREMRANGEBYSCORE', log[s], '-inf', cut)
      redis.call('DECRBY', tally[s], gone)
    end
    local members = redis.call('ZCARD', log[s])
    ng[s] = tonumber(redis.call('GET', tally[s])) or 0
    if members == 0 then
      ng[s] = 0
      redis.call('DEL', tally[s])
    elseif ng[s] < members then
      -- A counter lost (evicted) or behind: each member stands for one start at least, so it
      -- is counted again from the members, once.
      ng[s] = 0
      for from = 0, members - 1, 500 do
        for _, m in ipairs(redis.call('ZRANGE', log[s], from, from + 499)) do
          ng[s] = ng[s] + count(m)
        end
      end
      redis.call('SET', tally[s], ng[s])
    end
    single[s] = ng[s] == members
    nb[s], lastb[s] = 0, 0
    if redis.call('EXISTS', book[s]) == 1 then
      -- A booking whose job never came back (cancelled, lost) is dropped a minute and an
      -- interval on; a job back later than that waits behind the others, as a new one.
      redis.call('ZREMRANGEBYSCORE', book[s], '-inf', now - interval[s] - BOOKED_MS)
      nb[s] = redis.call('ZCARD', book[s])
      local top = redis.call('ZRANGE', book[s], -1, -1, 'WITHSCORES')
      lastb[s] = tonumber(top[2]) or 0
    end
  end
end
if S > 0 then
  local held = redis.call('HMGET', holds, unpack(names))
  for s = 1, S do pause[s] = tonumber(held[s]) or 0 end
end
local first = 2 + S * 3
local jobs = (#ARGV - first + 1) / 4
-- The batch's jobs that are back from a booking: one ZMSCORE per scope that has bookings.
local back = {}
for s = 1, S do
  if limit[s] > 0 and nb[s] > 0 and jobs > 0 then
    local ids = {}
    for j = 1, jobs do ids[j] = ARGV[first + (j - 1) * 4] end
    local scores = redis.call('ZMSCORE', book[s], unpack(ids))
    for j = 1, jobs do
      if scores[j] then back[j] = true end
    end
  end
end
-- Starts granted in this call are written in one ZADD per scope, before any rank is read.
local function flush(s)
  local a = adds[s]
  if #a == 0 then return end
  -- In steps of 500 members (unpack() of more than a few thousand values fails). A member
  -- already there (the same call sent twice, as after a reconnect) is not counted again.
  local added = 0
  for i = 1, #a, 1000 do
    local last = math.min(i + 999, #a)
    local names = {}
    for j = i + 1, last, 2 do names[#names + 1] = a[j] end
    local had = redis.call('ZMSCORE', log[s], unpack(names))
    for j = 1, #names do
      if not had[j] then added = added + count(names[j]) end
    end
    redis.call('ZADD', log[s], 'NX', unpack(a, i, last))
  end
  if added > 0 then redis.call('INCRBY', tally[s], added) end
  adds[s] = {}
end
-- The time of the start at 0-based rank r of scope s, oldest first. A member may stand for
-- several starts: then the members are walked, at most \`most\` of them (past that, the time
-- reached so far, an earlier one, is returned).
local function at(s, r, most)
  flush(s)
  if single[s] then
    return tonumber(redis.call('ZRANGE', log[s], r, r, 'WITHSCORES')[2]) or now
  end
  local seen, from, time = 0, 0, now
  while not most or from < most do
    local chunk = redis.call('ZRANGE', log[s], from, from + 99, 'WITHSCORES')
    if #chunk == 0 then return time end
    for i = 1, #chunk, 2 do
      seen = seen + count(chunk[i])
      time = tonumber(chunk[i + 1])
      if seen > r then return time end
    end
    from = from + 100
  end
  return time
end
-- The first time a start of scope s fits after the starts logged: now, or when the
-- limit-th latest start leaves the window.
local function room(s)
  local t = math.max(now, pause[s])
  if limit[s] > 0 and ng[s] >= limit[s] then
    t = math.max(t, at(s, ng[s] - limit[s]) + interval[s])
  end
  return t
end
-- Where a new job of scope s is booked: behind every booking, and where the plan (starts,
-- then bookings) has room for it.
local function plan(s)
  local t = math.max(room(s), lastb[s])
  local need = limit[s] - nb[s]
  if need <= 0 then
    local r = redis.call('ZRANGE', book[s], nb[s] - limit[s], nb[s] - limit[s], 'WITHSCORES')
    t = math.max(t, tonumber(r[2]) + interval[s])
  elseif ng[s] >= need and nb[s] > 0 then
    -- Only a plan: a booking too early is checked again when its job is back.
    t = math.max(t, at(s, ng[s] - need, 1000) + interval[s])
  end
  return t
end
local out = {now}
for j = 1, jobs do
  local k = first + (j - 1) * 4
  local id, tag, scopes, extra = ARGV[k], ARGV[k + 1], {}, tonumber(ARGV[k + 3])
  for s in string.gmatch(ARGV[k + 2], '%d+') do scopes[#scopes + 1] = tonumber(s) end
  local t = now
  if back[j] then
    -- Back from its booking: it needs room among the starts only.
    for _, s in ipairs(scopes) do
      if limit[s] > 0 and redis.call('ZREM', book[s], id) == 1 then nb[s] = nb[s] - 1 end
      t = math.max(t, room(s))
    end
  else
    -- New: it waits behind the jobs booked before it.
    for _, s in ipairs(scopes) do
      if limit[s] > 0 and nb[s] > 0 then t = math.max(t, plan(s)) else t = math.max(t, room(s)) end
    end
  end
  if t <= now then
    -- Starts granted ahead: only far from every limit, with nobody waiting.
    for _, s in ipairs(scopes) do
      if limit[s] > 0 then
        local most = nb[s] > 0 and 0 or math.floor(limit[s] / 2) - ng[s] - 1
        if most < extra then extra = math.max(0, most) end
      end
    end
    for _, s in ipairs(scopes) do
      if limit[s] > 0 then
        local a = adds[s]
        a[#a + 1] = now
        a[#a + 1] = (1 + extra) .. ':' .. tag
        ng[s] = ng[s] + 1 + extra
        if extra > 0 then single[s] = false end
      end
    end
    out[j + 1] = -extra
  else
    for _, s in ipairs(scopes) do
      if limit[s] > 0 then
        nb[s] = nb[s] + redis.call('ZADD', book[s], t, id)
        if t > lastb[s] then lastb[s] = t end
      end
    end
    out[j + 1] = t
  end
end
for s = 1, S do
  if limit[s] > 0 then
    flush(s)
    -- Idle scopes' keys go once nothing in them matters any more.
    redis.call('PEXPIRE', log[s], interval[s])
    redis.call('PEXPIRE', tally[s], interval[s])
    if nb[s] > 0 then
      redis.call('PEXPIRE', book[s], math.max(1, lastb[s] - now) + interval[s] + BOOKED_MS)
    end
  end
end
return out
`;

/** The Lua of HOLD. */
export const HOLD: string = PRELUDE + `
local holds, channel = KEYS[1], ARGV[1]
local now = now_ms()
local ends = now + tonumber(ARGV[2])
local latest = ends
for i = 3, #ARGV do
  local scope = ARGV[i]
  local was = tonumber(redis.call('HGET', holds, scope)) or 0
  local t = math.max(was, ends)
  if t > was then redis.call('HSET', holds, scope, t) end
  publish(channel, scope .. ' ' .. t .. ' ' .. now)
  latest = math.max(latest, t)
end
-- Pauses long over are dropped.
local all = redis.call('HGETALL', holds)
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) < now then redis.call('HDEL', holds, all[i]) end
end
return {latest, now}
`;

/** One scope of a TAKE call: its name and limit (0: paused only, no limit). */
export interface Scope {
  /** `q` or `t:<task>`. */
  readonly name: string;
  /** Starts per interval; 0 for a scope that is only paused. */
  readonly limit: number;
  /** The interval, ms. */
  readonly interval: number;
}

/** One job asking to start: its id, a tag unique to this delivery, its scopes, and extras. */
export interface Asking {
  /** The job id. */
  readonly id: string;
  /** Unique to the delivery: lane, entry id and delivery count. */
  readonly tag: string;
  /** Indexes into the call's scopes. */
  readonly scopes: readonly number[];
  /** Starts to grant ahead with this one, for the worker's next jobs (0: none). */
  readonly extra: number;
}

/** TAKE's arguments (see the module doc). */
export function takeArgs(keys: Keys, scopes: readonly Scope[], jobs: readonly Asking[]): string[] {
  const args = [String(1 + scopes.length * 3), keys.holds];
  for (const s of scopes) args.push(keys.rate(s.name), keys.tally(s.name), keys.booked(s.name));
  args.push(String(scopes.length));
  for (const s of scopes) args.push(s.name, String(s.limit), String(s.interval));
  for (const j of jobs) {
    args.push(j.id, j.tag, j.scopes.map((s) => s + 1).join(" "), String(j.extra));
  }
  return args;
}

/** HOLD's arguments (see the module doc). */
export function holdArgs(keys: Keys, ms: number, scopes: readonly string[]): string[] {
  return ["1", keys.holds, keys.held, String(ms), ...scopes];
}

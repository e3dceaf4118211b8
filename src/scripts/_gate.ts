/**
 * The group gate: Lua shared by the scripts that put grouped jobs into the ready stream or
 * take them out of it (ENQUEUE, PROMOTE, REPLAY, SETTLE, RECLAIM, RENEW, RETIRE, CANCEL,
 * GROUPS).
 *
 * A grouped job enters the stream only while its group has room: fewer of its entries in the
 * stream (waiting or running) than its concurrency. Otherwise it waits in its group's line, a
 * FIFO kept in two hashes (no key per group, so thousands of idle groups cost nothing). When a
 * grouped entry leaves the stream (acked, failed, retried later, deferred, dead-lettered,
 * cancelled, or trimmed away while a worker held it), the script that removes it gives
 * the room back and moves the group's next waiting job in. Room is tied to stream entries, so
 * reclaim keeps it with the job, and it is given back exactly once: `g_free` deletes the entry's
 * slot first and counts only if it was there.
 *
 * Each group's state is one field of the lines hash, "<r> <h> <t> <n>": r of its entries in the
 * stream, h the last place taken from its line, t the last place given, n jobs waiting. One read
 * and one write of it per move: a settle that frees a slot and moves the next job in costs
 * about 9 Redis calls.
 *
 * Fairness follows: each group holds at most its concurrency in the stream, so a group with a
 * backlog of 10,000 holds no more of it than a group with 10 jobs, and their starts interleave.
 *
 * Scripts that use it set `G` to the four group keys (see `groupKeys`) first.
 *
 * @module
 */
import type { Keys } from "../keys.ts";

/** The group keys a gated script takes, in the order `G` lists them. */
export function groupKeys(keys: Keys): string[] {
  return [keys.groups, keys.groupJobs, keys.groupLines, keys.groupSlots];
}

/** How many keys `groupKeys` gives. */
export const GROUP_KEYS = 4;

/** The Lua of the gate; needs the prelude's `field`. */
export const GATE = `
-- {settings, jobs, lines, slots}: set by the script before any g_ call.
local G = nil
-- The most jobs a settle or an enqueue moves in from one line by the way (GROUPS moves more).
local G_STEP = 100
-- Group g's concurrency: -1 while paused, a big number with none set. Read once per group per
-- script run (a settle of 100 jobs of a few groups reads each group's settings once).
local g_caps = {}
local function g_cap(g)
  local cap = g_caps[g]
  if cap then return cap end
  local c = redis.call('HMGET', G[1], 'p:' .. g, 'c:' .. g, 'c')
  if c[1] then cap = -1 else cap = tonumber(c[2] or c[3]) or 1e15 end
  g_caps[g] = cap
  return cap
end
-- Group g's state: entries in the stream, last place taken, last place given, jobs waiting.
local function g_get(g)
  local v = redis.call('HGET', G[3], g)
  if not v then return 0, 0, 0, 0 end
  local r, h, t, n = string.match(v, '^(%d+) (%d+) (%d+) (%d+)$')
  return tonumber(r) or 0, tonumber(h) or 0, tonumber(t) or 0, tonumber(n) or 0
end
-- Writes group g's state; a group with nothing in the stream and nothing waiting has none, and
-- an empty line starts its places over.
local function g_put(g, r, h, t, n)
  if n <= 0 then h, t, n = 0, 0, 0 end
  if r <= 0 and n == 0 then
    redis.call('HDEL', G[3], g)
  else
    redis.call('HSET', G[3], g, string.format('%d %d %d %d', math.max(r, 0), h, t, n))
  end
end
-- Adds a job of g to the stream with its slot (the caller counts it): returns the entry id.
local function g_add(stream, g, f)
  local id = field(f, 'id') or ''
  local entry = redis.call('XADD', stream, '*', unpack(f))
  redis.call('HSET', G[4], 'e:' .. entry, g .. '\\n' .. id, 'j:' .. id, entry)
  return entry
end
-- Takes the next job of g's line after place h (up to t), skipping places a cancel emptied:
-- its fields (or nil), and the place taken.
local function g_take(g, h, t)
  while h < t do
    h = h + 1
    local place = h .. ':' .. g
    local item = redis.call('HGET', G[2], place)
    if item then
      redis.call('HDEL', G[2], place)
      return cjson.decode(item), h
    end
  end
  return nil, h
end
-- Moves up to \`most\` jobs of g from its line into the stream, while it has room: returns how
-- many moved.
local function g_fill(stream, g, most)
  local cap = g_cap(g)
  local r, h, t, n = g_get(g)
  local moved = 0
  while moved < most and r < cap and n > 0 do
    local f
    f, h = g_take(g, h, t)
    if not f then
      n = 0
    else
      g_add(stream, g, f)
      r, n, moved = r + 1, n - 1, moved + 1
    end
  end
  if moved > 0 or n == 0 then g_put(g, r, h, t, n) end
  return moved
end
-- Takes job \`id\` of g out of its line (a cancel): true if it was waiting there, at \`place\`.
-- A line that emptied starts its places over, so the job at a place is checked to be this one.
local function g_unwait(g, place, id)
  if not place then return false end
  local item = redis.call('HGET', G[2], place .. ':' .. g)
  if not item or field(cjson.decode(item), 'id') ~= id then return false end
  redis.call('HDEL', G[2], place .. ':' .. g)
  local r, h, t, n = g_get(g)
  g_put(g, r, h, t, n - 1)
  return true
end
-- Entry \`entry\` left the stream: if it was a grouped job's, its group gets the room back and
-- its next waiting job moves in. Returns the group, or nil.
local function g_free(stream, entry)
  local slot = 'e:' .. entry
  local v = redis.call('HGET', G[4], slot)
  if not v then return nil end
  local cut = string.find(v, '\\n', 1, true)
  local g, id = string.sub(v, 1, cut - 1), string.sub(v, cut + 1)
  redis.call('HDEL', G[4], slot, 'j:' .. id)
  local r, h, t, n = g_get(g)
  r = r - 1
  -- A concurrency lowered meanwhile, or a pause, leaves the room unused; one raised (or a
  -- line that grew while a raise was being stored) fills all the room there is.
  if n > 0 then
    -- At most G_STEP at a time: an unlimited group's line (after a pause) drains in steps.
    local cap, moved = g_cap(g), 0
    while n > 0 and r < cap and moved < G_STEP do
      moved = moved + 1
      local f
      f, h = g_take(g, h, t)
      if f then
        g_add(stream, g, f)
        r, n = r + 1, n - 1
      else
        n = 0
      end
    end
  end
  g_put(g, r, h, t, n)
  return g
end
-- A grouped entry was re-added as \`new\` (a release, or a retry due at once): it keeps its room.
local function g_moved(old, new)
  local v = redis.call('HGET', G[4], 'e:' .. old)
  if not v then return end
  local cut = string.find(v, '\\n', 1, true)
  redis.call('HDEL', G[4], 'e:' .. old)
  redis.call('HSET', G[4], 'e:' .. new, v, 'j:' .. string.sub(v, cut + 1), new)
end
-- A grouped job, due now, goes to the stream if its group has room and nobody waits before it,
-- else to the end of its line. Returns its entry id, or nil and its place in the line.
local function g_admit(stream, g, f)
  -- A group name with a control character (written by hand) is not gated: the worker
  -- dead-letters the entry as malformed.
  if string.find(g, '%c') then return redis.call('XADD', stream, '*', unpack(f)), nil end
  local r, h, t, n = g_get(g)
  if n == 0 and r < g_cap(g) then
    local entry = g_add(stream, g, f)
    g_put(g, r + 1, h, t, n)
    return entry, nil
  end
  t = t + 1
  redis.call('HSET', G[2], t .. ':' .. g, cjson.encode(f))
  g_put(g, r, h, t, n + 1)
  -- Room and a line at once (a concurrency raised while the line grew): the line moves first.
  if r < g_cap(g) then g_fill(stream, g, math.min(g_cap(g) - r, G_STEP)) end
  return nil, t
end
`;

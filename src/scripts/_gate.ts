/**
 * The group gate: Lua shared by the scripts that put grouped jobs into the ready stream or
 * take them out of it (ENQUEUE, PROMOTE, SETTLE, RECLAIM, CANCEL, GROUPS).
 *
 * A grouped job enters the stream only while its group has room: fewer of its entries in the
 * stream (waiting or running) than its concurrency. Otherwise it waits in its group's line, a
 * FIFO kept in two hashes (no key per group, so thousands of idle groups cost nothing). When a
 * grouped entry leaves the stream (acked, failed, retried later, deferred, dead-lettered,
 * cancelled, or trimmed away while a dead worker held it), the script that removes it gives
 * the room back and moves the group's next waiting job in. Room is tied to stream entries, so
 * reclaim keeps it with the job, and it is given back exactly once: `g_free` deletes the entry's
 * slot first and counts only if it was there.
 *
 * Fairness follows: each group holds at most its concurrency in the stream, so a group with a
 * backlog of 10,000 holds no more of it than a group with 10 jobs, and their starts interleave.
 *
 * Scripts that use it set `G` to the five group keys (see `groupKeys`) first.
 *
 * @module
 */
import type { Keys } from "../keys.ts";

/** The group keys a gated script takes, in the order `G` lists them. */
export function groupKeys(keys: Keys): string[] {
  return [keys.groups, keys.groupJobs, keys.groupLines, keys.groupRunning, keys.groupSlots];
}

/** How many keys `groupKeys` gives. */
export const GROUP_KEYS = 5;

/** The Lua of the gate; needs the prelude's `field`. */
export const GATE = `
-- {settings, jobs, lines, running, slots}: set by the script before any g_ call.
local G = nil
-- How many more entries group g may have in the stream now (0 or less: none): -1 while
-- paused, a big number with no concurrency set.
local function g_room(g)
  local c = redis.call('HMGET', G[1], 'p:' .. g, 'c:' .. g, 'c')
  if c[1] then return -1 end
  local cap = tonumber(c[2] or c[3])
  if not cap then return 1e15 end
  return cap - (tonumber(redis.call('HGET', G[4], g)) or 0)
end
-- How many jobs of g wait in its line.
local function g_waiting(g)
  return tonumber(redis.call('HGET', G[3], 'n:' .. g)) or 0
end
-- Adds a job of g to the stream and counts it: returns the entry id.
local function g_launch(stream, g, f, id)
  local entry = redis.call('XADD', stream, '*', unpack(f))
  redis.call('HINCRBY', G[4], g, 1)
  redis.call('HSET', G[5], 'e:' .. entry, g .. '\\n' .. id, 'j:' .. id, entry)
  return entry
end
-- Puts a job of g at the end of its line: returns its place (seq).
local function g_wait(g, f)
  local t = redis.call('HINCRBY', G[3], 't:' .. g, 1)
  redis.call('HINCRBY', G[3], 'n:' .. g, 1)
  redis.call('HSET', G[2], t .. ':' .. g, cjson.encode(f))
  return t
end
-- Takes the next job of g's line, skipping places emptied by a cancel: its fields, or nil if
-- the line is empty.
local function g_next(g)
  while true do
    local s = redis.call('HMGET', G[3], 'h:' .. g, 't:' .. g)
    local h, t = (tonumber(s[1]) or 0) + 1, tonumber(s[2]) or 0
    if h > t then return nil end
    local place = h .. ':' .. g
    local item = redis.call('HGET', G[2], place)
    local left = 0
    if item then
      redis.call('HDEL', G[2], place)
      left = redis.call('HINCRBY', G[3], 'n:' .. g, -1)
    end
    if h == t or (item and left <= 0) then
      -- Nothing waits behind it (places after it, if any, were emptied by cancels).
      redis.call('HDEL', G[3], 'h:' .. g, 't:' .. g, 'n:' .. g)
    else
      redis.call('HSET', G[3], 'h:' .. g, h)
    end
    if item then return cjson.decode(item) end
  end
end
-- Moves up to \`most\` jobs of g from its line into the stream, while it has room: returns how
-- many moved.
local function g_fill(stream, g, most)
  local room, moved = g_room(g), 0
  while moved < most and room > 0 do
    local f = g_next(g)
    if not f then break end
    g_launch(stream, g, f, field(f, 'id') or '')
    moved = moved + 1
    room = room - 1
  end
  return moved
end
-- Takes job \`id\` of g out of its line (a cancel): true if it was waiting there, at \`place\`.
-- A line that emptied starts its places over, so the job at a place is checked to be this one.
local function g_unwait(g, place, id)
  if not place then return false end
  local item = redis.call('HGET', G[2], place .. ':' .. g)
  if not item or field(cjson.decode(item), 'id') ~= id then return false end
  redis.call('HDEL', G[2], place .. ':' .. g)
  if redis.call('HINCRBY', G[3], 'n:' .. g, -1) <= 0 then
    redis.call('HDEL', G[3], 'h:' .. g, 't:' .. g, 'n:' .. g)
  end
  return true
end
-- Entry \`entry\` left the stream: if it was a grouped job's, its group gets the room back and
-- its next waiting job moves in (one out, one in: the group's count stays). Returns the group,
-- or nil.
local function g_free(stream, entry)
  local slot = 'e:' .. entry
  local v = redis.call('HGET', G[5], slot)
  if not v then return nil end
  local cut = string.find(v, '\\n', 1, true)
  local g, id = string.sub(v, 1, cut - 1), string.sub(v, cut + 1)
  redis.call('HDEL', G[5], slot, 'j:' .. id)
  -- The room is free if the group is not paused and is still under its concurrency with this
  -- entry gone (a concurrency lowered meanwhile leaves it at or over).
  local f = nil
  if g_room(g) >= 0 then f = g_next(g) end
  if f then
    local new = redis.call('XADD', stream, '*', unpack(f))
    local next_id = field(f, 'id') or ''
    redis.call('HSET', G[5], 'e:' .. new, g .. '\\n' .. next_id, 'j:' .. next_id, new)
  elseif redis.call('HINCRBY', G[4], g, -1) <= 0 then
    redis.call('HDEL', G[4], g)
  end
  return g
end
-- A grouped entry was re-added as \`new\` (a release, or a retry due at once): it keeps its room.
local function g_moved(old, new)
  local v = redis.call('HGET', G[5], 'e:' .. old)
  if not v then return end
  local cut = string.find(v, '\\n', 1, true)
  redis.call('HDEL', G[5], 'e:' .. old)
  redis.call('HSET', G[5], 'e:' .. new, v, 'j:' .. string.sub(v, cut + 1), new)
end
-- A grouped job, due now, goes to the stream if its group has room and nobody waits before it,
-- else to its line. Returns its entry id, or nil and its place in the line.
local function g_admit(stream, g, f, id)
  -- A group name with a control character (written by hand) is not gated: the worker
  -- dead-letters the entry as malformed.
  if string.find(g, '%c') then return redis.call('XADD', stream, '*', unpack(f)), nil end
  if g_room(g) > 0 and g_waiting(g) == 0 then return g_launch(stream, g, f, id), nil end
  return nil, g_wait(g, f)
end
`;

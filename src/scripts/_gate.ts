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
 * Each group's state is one field of the lines hash: r of its entries in the stream, h the last
 * place taken from its line, t the last place given, n jobs waiting, packed as byte 255 and four
 * little-endian 64-bit integers (see `g_get`).
 *
 * Fairness follows: each group holds at most its concurrency in the stream, so a group with a
 * backlog of 10,000 holds no more of it than a group with 10 jobs, and their starts interleave.
 *
 * Cost. A script may set `G_LAZY`: the gate then keeps its writes in Lua tables and writes each
 * hash once, in `g_flush()`, which the script must call before it returns. A settle that frees
 * a slot and moves the next job in then makes 4 Redis calls per job (delete the slot, read the
 * state and the waiting job; XADD it) instead of 9. Measured with callgrind on Redis 7.0, a
 * grouped job's settle went from about 180k to about 150k instructions that way (a plain
 * job's: 57k), and to about 136k (plain: 60k) once the settle named each job's group, most
 * waiting jobs were kept without their field names, and a change became a table assignment:
 * in this Lua, each string made, call and table lookup per job counts.
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
-- Lazy: the gate's writes wait in the tables below until the script calls g_flush() (it must,
-- before every return); else each g_ call writes them before it returns. A settle of 100 jobs
-- then writes each hash once, not once per job.
local G_LAZY = false
-- The most jobs a settle or an enqueue moves in from one line by the way (GROUPS moves more).
local G_STEP = 100
-- Group g's concurrency: -1 while paused, a big number with none set. Read once per group per
-- script run, and once per script run while no group has its own setting or pause: the hash
-- then holds only the default ('c') and the rate limit ('r').
local g_caps, g_same = {}, nil
local function g_cap(g)
  local cap = g_caps[g]
  if cap then return cap end
  if g_same == nil then
    local s = redis.call('HMGET', G[1], 'c', 'r')
    local global = (s[1] and 1 or 0) + (s[2] and 1 or 0)
    g_same = redis.call('HLEN', G[1]) == global and (tonumber(s[1]) or 1e15)
  end
  if g_same then
    cap = g_same
  else
    local c = redis.call('HMGET', G[1], 'p:' .. g, 'c:' .. g, 'c')
    if c[1] then cap = -1 else cap = tonumber(c[2] or c[3]) or 1e15 end
  end
  g_caps[g] = cap
  return cap
end
-- What the script changed and has not written yet: per hash, field -> value (false: deleted).
-- A change is a plain assignment to these tables, no call.
local g_lines, g_items, g_slots = {}, {}, {}
-- The library functions a settle calls per job, as upvalues: each global lookup saved counts.
local G_CALL, G_BYTE, G_PACK, G_UNPACK = redis.call, string.byte, struct.pack, struct.unpack
local G_MP_UNPACK, G_FMT = cmsgpack.unpack, string.format
-- Reads field f of a gate hash through what the script changed: its value, or nil.
local function g_read(store, key, f)
  local v = store[f]
  if v == nil then return G_CALL('HGET', key, f) end
  return v or nil
end
-- Writes what the script changed to the gate's hashes, in a few large calls. With \`pad\`, the
-- first value written gets 64 spaces more: a value that long makes Redis keep the hash as a
-- hash table, never as a listpack, whose lookups scan every field (a listpack of 100 groups
-- made each lookup cost about 2.5 times a hash table's).
local G_PAD = string.rep(' ', 64)
local function g_write(key, store, pad)
  local set, del = {}, {}
  for f, v in pairs(store) do
    if v then
      set[#set + 1] = f
      set[#set + 1] = v
    else
      del[#del + 1] = f
    end
  end
  if pad and set[2] then set[2] = set[2] .. G_PAD end
  for i = 1, #set, 1000 do redis.call('HSET', key, unpack(set, i, math.min(i + 999, #set))) end
  for i = 1, #del, 500 do redis.call('HDEL', key, unpack(del, i, math.min(i + 499, #del))) end
end
local function g_flush()
  if not G then return end
  g_write(G[2], g_items)
  g_write(G[3], g_lines, true)
  g_write(G[4], g_slots)
  g_items, g_lines, g_slots = {}, {}, {}
end
local function g_done()
  if not G_LAZY then g_flush() end
end
-- Group g's state: entries in the stream, last place taken, last place given, jobs waiting.
-- Stored packed: byte 255, then the four as little-endian 64-bit integers (parsing them from
-- text cost about a twentieth of a settle). States written as text "<r> <h> <t> <n>" by earlier
-- versions start with a digit and are read as well.
local function g_get(g)
  local v = g_read(g_lines, G[3], g)
  if not v then return 0, 0, 0, 0 end
  if G_BYTE(v) == 255 then
    local r, h, t, n = G_UNPACK('<xi8i8i8i8', v)
    return r, h, t, n
  end
  local r, h, t, n = string.match(v, '^(%d+) (%d+) (%d+) (%d+)')
  return tonumber(r) or 0, tonumber(h) or 0, tonumber(t) or 0, tonumber(n) or 0
end
-- Sets group g's state; a group with nothing in the stream and nothing waiting has none, and
-- an empty line starts its places over.
local function g_put(g, r, h, t, n)
  if n <= 0 then h, t, n = 0, 0, 0 end
  if r <= 0 and n == 0 then
    g_lines[g] = false
  else
    g_lines[g] = G_PACK('<Bi8i8i8i8', 255, r > 0 and r or 0, h, t, n)
  end
end
-- Adds a job of g to the stream with its slot (the caller counts it): returns the entry id.
local function g_add(stream, g, f)
  local id = field(f, 'id') or ''
  local entry = redis.call('XADD', stream, '*', unpack(f))
  g_slots['e:' .. entry] = g .. '\\n' .. id
  g_slots['j:' .. id] = entry
  return entry
end
-- A waiting job's fields as stored in the line, MessagePack, in one of two forms:
-- - short: the integer 1, then the values of v, id, task, data, attempt, enq and group, for a
--   job with just these fields in this order (every job sluice enqueues unsigned, with no
--   retry, timeout or trace of its own): its names are not stored, and moving it in creates 8
--   Lua strings, not 18;
-- - full: one value per field, names and values, for any other job.
-- Lines written before were JSON arrays, which start with '['.
local function g_pack(f)
  if #f == 14 and f[1] == 'v' and f[3] == 'id' and f[5] == 'task' and f[7] == 'data'
      and f[9] == 'attempt' and f[11] == 'enq' and f[13] == 'group' then
    return cmsgpack.pack(1, f[2], f[4], f[6], f[8], f[10], f[12], f[14])
  end
  return cmsgpack.pack(unpack(f))
end
local function g_unpack(item)
  local b = string.byte(item)
  if b == 91 then return cjson.decode(item) end
  if b == 1 then
    local _, v, id, task, data, attempt, enq, g = cmsgpack.unpack(item)
    return {'v', v, 'id', id, 'task', task, 'data', data, 'attempt', attempt, 'enq', enq,
      'group', g}
  end
  return {cmsgpack.unpack(item)}
end
-- As g_add, for a job as its line keeps it: one in the short form goes in without a table.
local function g_add_item(stream, g, item)
  if G_BYTE(item) ~= 1 then return g_add(stream, g, g_unpack(item)) end
  local _, v, id, task, data, attempt, enq, group = G_MP_UNPACK(item)
  local entry = G_CALL('XADD', stream, '*', 'v', v, 'id', id, 'task', task, 'data', data,
    'attempt', attempt, 'enq', enq, 'group', group)
  g_slots['e:' .. entry] = g .. '\\n' .. id
  g_slots['j:' .. id] = entry
  return entry
end
-- Takes the next job of g's line after place h (up to t), skipping places a cancel emptied:
-- the item as its line keeps it (or nil), and the place taken.
local function g_take(g, h, t)
  while h < t do
    h = h + 1
    -- Formatted as an integer: a number concatenated goes through %.14g, at twice the cost.
    local place = G_FMT('%d:%s', h, g)
    local item = g_read(g_items, G[2], place)
    if item then
      g_items[place] = false
      return item, h
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
    local item
    item, h = g_take(g, h, t)
    if not item then
      n = 0
    else
      g_add_item(stream, g, item)
      r, n, moved = r + 1, n - 1, moved + 1
    end
  end
  if moved > 0 or n == 0 then g_put(g, r, h, t, n) end
  g_done()
  return moved
end
-- Takes job \`id\` of g out of its line (a cancel): true and its fields if it was waiting
-- there, at \`place\`.
-- A line that emptied starts its places over, so the job at a place is checked to be this one.
local function g_unwait(g, place, id)
  if not place then return false end
  local item = g_read(g_items, G[2], place .. ':' .. g)
  if not item then return false end
  local f = g_unpack(item)
  if field(f, 'id') ~= id then return false end
  g_items[place .. ':' .. g] = false
  local r, h, t, n = g_get(g)
  g_put(g, r, h, t, n - 1)
  g_done()
  return true, f
end
-- Entry \`entry\` left the stream: if it was a grouped job's, its group gets the room back and
-- its next waiting job moves in. Returns the group, or nil.
-- With \`known\` group and \`id\` (the settle's, read by the worker off the entry itself), an
-- entry whose slot this script has not touched is looked up by deleting it: one HDEL says
-- whether it held one, and nothing is read back.
local function g_free(stream, entry, known, id)
  local slot = 'e:' .. entry
  local g
  if known and g_slots[slot] == nil then
    if G_CALL('HDEL', G[4], slot) == 0 then return nil end
    g = known
  else
    local v = g_read(g_slots, G[4], slot)
    if not v then return nil end
    local cut = string.find(v, '\\n', 1, true)
    g, id = string.sub(v, 1, cut - 1), string.sub(v, cut + 1)
    g_slots[slot] = false
  end
  g_slots['j:' .. id] = false
  local r, h, t, n = g_get(g)
  r = r - 1
  -- A concurrency lowered meanwhile, or a pause, leaves the room unused; one raised (or a
  -- line that grew while a raise was being stored) fills all the room there is.
  if n > 0 then
    -- At most G_STEP at a time: an unlimited group's line (after a pause) drains in steps.
    local cap, moved = g_cap(g), 0
    while n > 0 and r < cap and moved < G_STEP do
      moved = moved + 1
      local item
      item, h = g_take(g, h, t)
      if item then
        g_add_item(stream, g, item)
        r, n = r + 1, n - 1
      else
        n = 0
      end
    end
  end
  g_put(g, r, h, t, n)
  g_done()
  return g
end
-- A grouped entry was re-added as \`new\` (a release, or a retry due at once): it keeps its room.
local function g_moved(old, new)
  local v = g_read(g_slots, G[4], 'e:' .. old)
  if not v then return end
  local cut = string.find(v, '\\n', 1, true)
  g_slots['e:' .. old] = false
  g_slots['e:' .. new] = v
  g_slots['j:' .. string.sub(v, cut + 1)] = new
  g_done()
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
    g_done()
    return entry, nil
  end
  t = t + 1
  g_items[G_FMT('%d:%s', t, g)] = g_pack(f)
  g_put(g, r, h, t, n + 1)
  -- Room and a line at once (a concurrency raised while the line grew): the line moves first.
  if r < g_cap(g) then g_fill(stream, g, math.min(g_cap(g) - r, G_STEP)) end
  g_done()
  return nil, t
end
`;

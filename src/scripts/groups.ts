/**
 * GROUPS: changes groups' settings and moves waiting jobs of groups that gained room into the
 * stream. `groupsArgs` builds its arguments.
 *
 * KEYS: stream (the lowest priority's), then the four group keys (see _gate.ts).
 * ARGV: action, value, most, then group names. Actions:
 *   set      value = the groups' concurrency ('' to drop theirs: the default applies)
 *   default  value = the default concurrency ('' for none: groups without their own are not
 *            limited)
 *   pause    the groups start nothing more (jobs already in the stream still run)
 *   resume   the groups run again
 *   fill     nothing changes
 * After the action, each listed group's waiting jobs move into the stream while it has room,
 * at most `most` over the whole call.
 * Reply: how many jobs moved; `most` means more may be waiting with room: call again with fill.
 *
 * @module
 */
import type { Keys } from "../keys.ts";
import { GATE, GROUP_KEYS, groupKeys } from "./_gate.ts";
import { PRELUDE } from "./_prelude.ts";

/** What GROUPS can do (see the module doc). */
export type GroupsAction = "set" | "default" | "pause" | "resume" | "fill";

/** The Lua of GROUPS. */
export const GROUPS: string = PRELUDE + GATE + `
local stream = KEYS[1]
G, G_LAZY = {KEYS[2], KEYS[3], KEYS[4], KEYS[5]}, true
local action, value, most = ARGV[1], ARGV[2], tonumber(ARGV[3])
if action == 'default' then
  if value == '' then redis.call('HDEL', G[1], 'c') else redis.call('HSET', G[1], 'c', value) end
end
local moved = 0
for i = 4, #ARGV do
  local g = ARGV[i]
  if action == 'set' and value == '' then
    redis.call('HDEL', G[1], 'c:' .. g)
  elseif action == 'set' then
    redis.call('HSET', G[1], 'c:' .. g, value)
  elseif action == 'pause' then
    redis.call('HSET', G[1], 'p:' .. g, '1')
  elseif action == 'resume' then
    redis.call('HDEL', G[1], 'p:' .. g)
  end
  if moved < most then moved = moved + g_fill(stream, g, most - moved) end
end
g_flush()
return moved
`;

/**
 * The arguments of one GROUPS call, key count first.
 *
 * @param keys The queue's keys.
 * @param action What to do.
 * @param value The concurrency for `set` and `default` ('' for none).
 * @param most The most waiting jobs to move.
 * @param groups The groups acted on and filled.
 * @returns The flat argument list: key count, KEYS, ARGV.
 */
export function groupsArgs(
  keys: Keys,
  action: GroupsAction,
  value: string,
  most: number,
  groups: readonly string[],
): string[] {
  return [
    String(1 + GROUP_KEYS),
    keys.stream,
    ...groupKeys(keys),
    action,
    value,
    String(most),
    ...groups,
  ];
}

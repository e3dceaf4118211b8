/**
 * Defines every sluice Lua script on a Redis client. ioredis sends them by SHA (EVALSHA) and
 * falls back to EVAL on NOSCRIPT, so a Redis restart or SCRIPT FLUSH is harmless.
 *
 * One file per script holds its Lua, a header listing its KEYS, ARGV and reply, and a typed
 * builder of its arguments. Every script names every key it touches in KEYS, and all of a
 * queue's keys share one hash tag, so the scripts run on Redis Cluster and proxies. Each method
 * takes the one flat array its builder returns: the key count, the keys, then the arguments.
 *
 * @module
 */
import type { Redis } from "ioredis";
import { SHARDED_OFF, SHARDED_ON } from "./_prelude.ts";
import { CANCEL } from "./cancel.ts";
import { CANCELLED } from "./cancelled.ts";
import { CLEAN, DRAIN } from "./drain.ts";
import { ENQUEUE, type EnqueueReply } from "./enqueue.ts";
import { HOLD, TAKE } from "./limit.ts";
import { GROUPS } from "./groups.ts";
import { MARK_DEAD } from "./mark_dead.ts";
import { PAUSE } from "./pause.ts";
import { DUE, type DueReply, PROMOTE, type PromoteReply } from "./promote.ts";
import { RECLAIM, type ReclaimReply } from "./reclaim.ts";
import { RENEW } from "./renew.ts";
import { PROGRESS } from "./progress.ts";
import { FIRE, SCHEDULE_PAUSE, SCHEDULE_REMOVE, SCHEDULE_SET } from "./schedule.ts";
import { REPLAY } from "./replay.ts";
import { HELD, RETIRE, RETIRE_END } from "./retire.ts";
import { SETTLE, type SettleCode } from "./settle.ts";
import { WAITING } from "./waiting.ts";

/** A Redis client with sluice's scripts defined on it. Each takes its builder's array. */
export interface ScriptClient extends Redis {
  /** SETTLE (settle.ts), with `settleArgs`: one code per operation. */
  sluiceSettle(args: string[]): Promise<SettleCode[]>;
  /** RENEW (renew.ts), with `renewArgs`: the entry ids no longer owned. */
  sluiceRenew(args: string[]): Promise<string[]>;
  /** RECLAIM (reclaim.ts), with `reclaimArgs`. */
  sluiceReclaim(args: string[]): Promise<ReclaimReply>;
  /** MARK_DEAD (mark_dead.ts), with `markDeadArgs`: how many records were marked. */
  sluiceMarkDead(args: string[]): Promise<number>;
  /** CANCELLED (cancelled.ts), with `cancelledArgs`: 1-based positions of cancelled jobs. */
  sluiceCancelled(args: string[]): Promise<number[]>;
  /** ENQUEUE (enqueue.ts), with `enqueueArgs`: one value per job. */
  sluiceEnqueue(args: string[]): Promise<EnqueueReply>;
  /** CANCEL (cancel.ts), with `cancelArgs`: the state before, or 'unknown'. */
  sluiceCancel(args: string[]): Promise<string>;
  /** DUE (promote.ts), with `dueArgs`: the ids due now; use `promote()`. */
  sluiceDue(args: string[]): Promise<DueReply>;
  /** PROMOTE (promote.ts), with `promoteArgs`: moved, and ms until the next is due. */
  sluicePromote(args: string[]): Promise<PromoteReply>;
  /** HELD (retire.ts), with `heldArgs`: entry id, job id pairs; use `retire()`. */
  sluiceHeld(args: string[]): Promise<string[]>;
  /** RETIRE (retire.ts), with `retireArgs`: how many entries were released. */
  sluiceRetire(args: string[]): Promise<number>;
  /** RETIRE_END (retire.ts), with `retireEndArgs`: 1 if the consumer was deleted. */
  sluiceRetireEnd(args: string[]): Promise<number>;
  /** REPLAY (replay.ts), with `replayArgs`: how many letters were replayed. */
  sluiceReplay(args: string[]): Promise<number>;
  /** WAITING (waiting.ts), with `waitingArgs`: registers a result() waiter. */
  sluiceWaiting(args: string[]): Promise<number>;
  /** PAUSE (pause.ts), with `pauseArgs`: 1 if the state changed. */
  sluicePause(args: string[]): Promise<number>;
  /** FIRE (schedule.ts), with `fireArgs`: fired and skipped ticks, or -1 if fenced out. */
  sluiceFire(args: string[]): Promise<[fired: number, skipped: number]>;
  /** SCHEDULE_SET (schedule.ts), with `scheduleSetArgs`: 0 unchanged, 1 replaced, 2 new. */
  sluiceScheduleSet(args: string[]): Promise<number>;
  /** SCHEDULE_REMOVE (schedule.ts), with `scheduleRemoveArgs`: 1 if it existed. */
  sluiceScheduleRemove(args: string[]): Promise<number>;
  /** TAKE (limit.ts), with `takeArgs`: Redis time, then per job 0 (start) or its booking. */
  sluiceTake(args: string[]): Promise<number[]>;
  /** HOLD (limit.ts), with `holdArgs`: when the pause ends, and Redis's time (ms). */
  sluiceHold(args: string[]): Promise<[until: number, now: number]>;
  /** GROUPS (groups.ts), with `groupsArgs`: how many waiting jobs moved into the stream. */
  sluiceGroups(args: string[]): Promise<number>;
  /** SCHEDULE_PAUSE (schedule.ts), with `schedulePauseArgs`: 1 if the schedule exists. */
  sluiceSchedulePause(args: string[]): Promise<number>;
  /** PROGRESS (progress.ts), with `progressArgs`: 1 if stored. */
  sluiceProgress(args: string[]): Promise<number>;
  /** DRAIN (drain.ts), with `drainArgs`: how many jobs were drained. */
  sluiceDrain(args: string[]): Promise<number>;
  /** CLEAN (drain.ts), with `cleanArgs`: how many records were deleted. */
  sluiceClean(args: string[]): Promise<number>;
}

/**
 * Defines every script on `client` (by SHA, with EVAL fallback) and returns it.
 *
 * @param client An ioredis client (or `Cluster`).
 * @param sharded On Redis Cluster: the scripts publish with SPUBLISH, which keeps a message on
 *   the shard of its channel, for subscribers of SSUBSCRIBE.
 * @returns The same client, typed with the script methods.
 */
export function defineScripts(client: Redis, sharded = false): ScriptClient {
  // No script has a fixed key count: each builder puts it first.
  const scripts: [string, string][] = [
    ["sluiceSettle", SETTLE],
    ["sluiceRenew", RENEW],
    ["sluiceReclaim", RECLAIM],
    ["sluiceMarkDead", MARK_DEAD],
    ["sluiceCancelled", CANCELLED],
    ["sluiceEnqueue", ENQUEUE],
    ["sluiceCancel", CANCEL],
    ["sluiceDue", DUE],
    ["sluicePromote", PROMOTE],
    ["sluiceHeld", HELD],
    ["sluiceRetire", RETIRE],
    ["sluiceRetireEnd", RETIRE_END],
    ["sluiceReplay", REPLAY],
    ["sluiceWaiting", WAITING],
    ["sluicePause", PAUSE],
    ["sluiceFire", FIRE],
    ["sluiceScheduleSet", SCHEDULE_SET],
    ["sluiceScheduleRemove", SCHEDULE_REMOVE],
    ["sluiceSchedulePause", SCHEDULE_PAUSE],
    ["sluiceTake", TAKE],
    ["sluiceHold", HOLD],
    ["sluiceGroups", GROUPS],
    ["sluiceProgress", PROGRESS],
    ["sluiceDrain", DRAIN],
    ["sluiceClean", CLEAN],
  ];
  for (const [name, lua] of scripts) {
    client.defineCommand(name, { lua: sharded ? lua.replace(SHARDED_OFF, SHARDED_ON) : lua });
  }
  return client as ScriptClient;
}

/**
 * Groups: fair queueing with per-group concurrency, pauses and rate limits, enforced in Redis
 * across all workers; and producers scoped to one group (tenant isolation).
 *
 * A grouped job enters the ready stream only while its group has room (fewer of its jobs in
 * the stream than its concurrency); otherwise it waits in its group's line, and moves in when
 * one of its group's jobs leaves the stream. See scripts/_gate.ts.
 *
 * @module
 */
import { GROUP, GROUP_RULE } from "./codec.ts";
import { ValidationError } from "./errors.ts";
import type { Keys } from "./keys.ts";
import { checkRateLimit, type RateLimit } from "./limits.ts";
import { checkInt, show } from "./_options.ts";
import type { ScriptClient } from "./scripts/mod.ts";
import { type GroupsAction, groupsArgs } from "./scripts/groups.ts";
import type { AnyTask, DataOf, ResultOf } from "./task.ts";
import type { EnqueueItem, EnqueueManyOptions, EnqueueOptions } from "./enqueue.ts";
import type { JobHandle } from "./handle.ts";

/** The most running jobs a group may be given. */
export const MAX_GROUP_CONCURRENCY = 1_000_000;

/** A Worker's `groups` option: limits every group has to itself. */
export interface GroupOptions {
  /**
   * At most this many jobs of one group in the ready stream (waiting or running) across all
   * workers: 1 to 1,000,000. A group's own setting (`queue.groups.set`) wins. Without it,
   * groups are not limited, and their jobs go to the stream as they come. The last Worker to
   * start with this option sets it for the queue: give every worker the same.
   */
  concurrency?: number;
  /**
   * At most `limit` starts of one group's jobs in any `interval` ms, across all workers
   * (each group counts its own). Checked like a task's `rateLimit`.
   */
  rateLimit?: RateLimit;
}

/** What `queue.groups.set` stores for one group. */
export interface GroupSettings {
  /**
   * The group's own concurrency, 1 to 1,000,000; `null` drops it, so the Workers' default
   * applies again.
   */
  concurrency?: number | null;
}

/** One group, as `queue.groups.list()` sees it. */
export interface GroupInfo {
  /** The group name. */
  group: string;
  /** Jobs waiting in the group's line for room (not yet in the stream). */
  waiting: number;
  /** Jobs of the group in the stream, waiting there or running. */
  running: number;
  /** The group's concurrency: its own, else the Workers' default; undefined if unlimited. */
  concurrency: number | undefined;
  /** True if the group has its own concurrency (`queue.groups.set`). */
  own: boolean;
  /** Each group's rate limit, from the last Worker started with `groups`; undefined if none. */
  rateLimit: RateLimit | undefined;
  /** True while the group is paused (`queue.groups.pause`). */
  paused: boolean;
  /**
   * True while the group is rate-limited: a handler's `ctx.rateLimited` paused it, or jobs of
   * it are booked for a later window of its `rateLimit`.
   */
  rateLimited: boolean;
}

/** Jobs moved into the stream per GROUPS call: about a millisecond of Redis's time. */
const FILL_STEP = 1_000;
/** Groups per GROUPS call when many are filled at once. */
const GROUP_STEP = 500;

/**
 * Checks a Worker's `groups` option.
 *
 * @example
 * ```ts
 * import { checkGroupOptions } from "./groups.ts";
 * console.log(checkGroupOptions("Cannot create worker w", { concurrency: 2 })); // { concurrency: 2 }
 * ```
 */
export function checkGroupOptions(action: string, value: unknown): GroupOptions {
  const known = ["concurrency", "rateLimit"];
  const options = checkObject(action, "groups", value, known);
  const out: GroupOptions = {};
  if (options.concurrency !== undefined) {
    checkInt(
      action,
      "groups.concurrency",
      options.concurrency,
      1,
      MAX_GROUP_CONCURRENCY,
      ValidationError,
    );
    out.concurrency = options.concurrency as number;
  }
  if (options.rateLimit !== undefined) {
    out.rateLimit = checkRateLimit(action, "groups.rateLimit", options.rateLimit);
  }
  return Object.freeze(out);
}

/** Throws a `ValidationError` unless `name` is a group name. */
export function checkGroup(action: string, name: unknown): asserts name is string {
  if (typeof name !== "string" || !GROUP.test(name)) {
    throw new ValidationError(`${action}: group must be ${GROUP_RULE}, got ${show(name)}`);
  }
}

function checkObject(
  action: string,
  name: string,
  value: unknown,
  known: readonly string[],
): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ValidationError(`${action}: ${name} must be an object, got ${show(value)}`);
  }
  const extra = Object.keys(value).find((k) => !known.includes(k));
  if (extra !== undefined) {
    throw new ValidationError(
      `${action}: ${name} has unknown option ${extra} (it takes ${known.join(" and ")})`,
    );
  }
  return value as Record<string, unknown>;
}

/** @internal What `Groups` needs from its queue. */
export interface GroupsContext {
  readonly keys: Keys;
  client(): ScriptClient;
  checkOpen(action: string): void;
}

/**
 * Runs GROUPS for `groups`, then fills them until no more moves: returns how many moved.
 * Many groups go in steps of GROUP_STEP, and each call moves at most FILL_STEP jobs, so Redis
 * is never held up long.
 */
export async function runGroups(
  client: ScriptClient,
  keys: Keys,
  action: GroupsAction,
  value: string,
  groups: readonly string[],
): Promise<number> {
  let moved = 0;
  for (let i = 0; i < groups.length || i === 0; i += GROUP_STEP) {
    const part = groups.slice(i, i + GROUP_STEP);
    let step = await client.sluiceGroups(groupsArgs(keys, action, value, FILL_STEP, part));
    moved += step;
    while (step === FILL_STEP) {
      step = await client.sluiceGroups(groupsArgs(keys, "fill", "", FILL_STEP, part));
      moved += step;
    }
  }
  return moved;
}

/** A group's jobs in the stream (waiting there or running) and waiting in its line. */
interface GroupCounts {
  running: number;
  waiting: number;
}

/**
 * Every group with jobs in the stream or in its line, from its state (see scripts/_gate.ts):
 * an HSCAN in steps, never one big read.
 */
export async function activeGroups(
  client: ScriptClient,
  keys: Keys,
): Promise<Map<string, GroupCounts>> {
  const out = new Map<string, GroupCounts>();
  let cursor = "0";
  do {
    const [next, flat] = await client.hscanBuffer(keys.groupLines, cursor, "COUNT", 1_000);
    for (let i = 0; i + 1 < flat.length; i += 2) {
      out.set(flat[i]!.toString(), groupCounts(flat[i + 1]!));
    }
    cursor = next.toString();
  } while (cursor !== "0");
  return out;
}

/**
 * A group's running and waiting counts from its state: byte 255 then four little-endian 64-bit
 * integers (in the stream, place taken, place given, waiting), or the text "<r> <h> <t> <n>"
 * that earlier versions wrote.
 */
function groupCounts(state: Uint8Array): GroupCounts {
  if (state[0] === 255 && state.length >= 33) {
    const view = new DataView(state.buffer, state.byteOffset, state.byteLength);
    return {
      running: Number(view.getBigInt64(1, true)),
      waiting: Number(view.getBigInt64(25, true)),
    };
  }
  const [running, , , waiting] = new TextDecoder().decode(state).trim().split(" ").map(Number);
  return { running: running || 0, waiting: waiting || 0 };
}

/**
 * Stores a Worker's `groups` option: its default per-group concurrency (or none), then moves in
 * the waiting jobs of groups that gained room; and its per-group rate limit, for
 * `queue.groups.list()` to show (each worker enforces its own).
 */
export async function storeGroupOptions(
  client: ScriptClient,
  keys: Keys,
  options: GroupOptions,
): Promise<void> {
  const { concurrency, rateLimit } = options;
  const active = await activeGroups(client, keys);
  const waiting = [...active].filter(([, counts]) => counts.waiting > 0).map(([group]) => group);
  await runGroups(
    client,
    keys,
    "default",
    concurrency === undefined ? "" : String(concurrency),
    waiting,
  );
  if (rateLimit === undefined) await client.hdel(keys.groups, "r");
  else await client.hset(keys.groups, "r", JSON.stringify(rateLimit));
}

/**
 * A queue's groups: their settings, pauses and counts. Get it as `queue.groups`.
 *
 * @example Give one tenant more room, pause another, and look
 * ```ts
 * import { Queue } from "@sluice/sluice";
 * import { startRedis } from "@sluice/sluice/testing";
 * await using redis = await startRedis();
 * await using queue = new Queue("mail", { redis: redis.url });
 * await queue.enqueue("send", { to: "a@example.com" }, { group: "tenant-42" });
 * await queue.groups.set("tenant-42", { concurrency: 10 });
 * await queue.groups.pause("tenant-7");
 * const groups = await queue.groups.list();
 * console.log(groups.map((g) => [g.group, g.running, g.concurrency, g.paused]));
 * // [ [ "tenant-42", 1, 10, false ], [ "tenant-7", 0, undefined, true ] ]
 * ```
 */
export class Groups {
  #ctx: GroupsContext;

  /** @internal Made by `Queue`. */
  constructor(ctx: GroupsContext) {
    this.#ctx = ctx;
  }

  /**
   * Stores a group's own settings, which win over the Workers' `groups` option. Raising its
   * concurrency moves its waiting jobs in at once; lowering it lets running ones finish.
   *
   * @param group The group name.
   * @param settings `concurrency`: 1 to 1,000,000, or `null` to drop the group's own.
   * @throws {ValidationError} If the name or a setting is out of range.
   */
  async set(group: string, settings: GroupSettings): Promise<void> {
    const action = "Cannot set group";
    checkGroup(action, group);
    const { concurrency } = checkObject(action, "settings", settings, ["concurrency"]);
    if (concurrency === undefined) return;
    if (concurrency !== null) {
      checkInt(action, "concurrency", concurrency, 1, MAX_GROUP_CONCURRENCY, ValidationError);
    }
    this.#ctx.checkOpen("set a group");
    const value = concurrency === null ? "" : String(concurrency);
    await runGroups(this.#ctx.client(), this.#ctx.keys, "set", value, [group]);
  }

  /**
   * Pauses a group on every worker: none of its jobs enters the stream until `resume`. Jobs
   * already in the stream (at most its concurrency) still run.
   *
   * @param group The group name.
   */
  async pause(group: string): Promise<void> {
    checkGroup("Cannot pause group", group);
    this.#ctx.checkOpen("pause a group");
    await runGroups(this.#ctx.client(), this.#ctx.keys, "pause", "", [group]);
  }

  /**
   * Resumes a paused group: its waiting jobs move into the stream as its room allows.
   *
   * @param group The group name.
   * @returns How many waiting jobs moved into the stream.
   */
  async resume(group: string): Promise<number> {
    checkGroup("Cannot resume group", group);
    this.#ctx.checkOpen("resume a group");
    return await runGroups(this.#ctx.client(), this.#ctx.keys, "resume", "", [group]);
  }

  /**
   * Every group with jobs waiting or running, or with settings of its own, by name. Reads the
   * settings whole and the groups' states in HSCAN steps; a group's rate-limit bookings are
   * read only for groups with jobs.
   */
  async list(): Promise<GroupInfo[]> {
    this.#ctx.checkOpen("list groups");
    const client = this.#ctx.client(), keys = this.#ctx.keys;
    const counts = await activeGroups(client, keys);
    const [[, settings], [, holds], [, time]] = await client.multi()
      .hgetall(keys.groups)
      .hgetall(keys.holds)
      .time()
      .exec() as [
        [null, Record<string, string>],
        [null, Record<string, string>],
        [null, [string, string]],
      ];
    const now = Number(time[0]) * 1_000 + Math.floor(Number(time[1]) / 1_000);
    const names = new Set<string>(counts.keys());
    for (const key of Object.keys(settings)) {
      if (key.startsWith("c:") || key.startsWith("p:")) names.add(key.slice(2));
    }
    const sorted = [...names].sort();
    const pipeline = client.pipeline();
    const active = sorted.filter((g) => counts.has(g));
    for (const g of active) pipeline.zcard(keys.booked(`g:${g}`));
    const booked = new Map<string, number>();
    const replies = active.length > 0 ? await pipeline.exec() ?? [] : [];
    active.forEach((g, i) => booked.set(g, Number(replies[i]?.[1] ?? 0)));
    const fallback = settings.c === undefined ? undefined : Number(settings.c);
    const rateLimit = settings.r === undefined ? undefined : JSON.parse(settings.r) as RateLimit;
    return sorted.map((group) => {
      const own = settings[`c:${group}`];
      return {
        group,
        waiting: counts.get(group)?.waiting ?? 0,
        running: counts.get(group)?.running ?? 0,
        concurrency: own === undefined ? fallback : Number(own),
        own: own !== undefined,
        rateLimit,
        paused: settings[`p:${group}`] !== undefined,
        rateLimited: Number(holds[`g:${group}`] ?? 0) > now || (booked.get(group) ?? 0) > 0,
      };
    });
  }
}

/** @internal What a scoped producer needs from its queue. */
export interface ScopeContext {
  enqueue(task: AnyTask | string, data: unknown, options: EnqueueOptions): Promise<JobHandle>;
  enqueueMany(
    task: AnyTask | string,
    items: Iterable<EnqueueItem<unknown>>,
    options: EnqueueManyOptions,
  ): Promise<JobHandle[]>;
  job(id: string): JobHandle;
}

/**
 * A producer scoped to one group, from `queue.forGroup(group)`: every job it enqueues is in
 * that group, and its handles see only that group's jobs. `job(id).info()` of another group's
 * job (or of one with no group) answers undefined, as for an unknown id, and `cancel()` finds
 * nothing to cancel, so one tenant cannot probe or touch another's jobs.
 *
 * @example
 * ```ts
 * import { Queue } from "@sluice/sluice";
 * import { startRedis } from "@sluice/sluice/testing";
 * await using redis = await startRedis();
 * await using queue = new Queue("mail", { redis: redis.url });
 * const acme = queue.forGroup("acme"), globex = queue.forGroup("globex");
 * await acme.enqueue("send", { to: "a@acme.test" }, { id: "acme-1" });
 * console.log((await acme.job("acme-1").info())?.state); // "waiting"
 * console.log(await globex.job("acme-1").info()); // undefined
 * console.log((await globex.job("acme-1").cancel()).cancelled); // false
 * ```
 */
export class GroupProducer {
  /** The group. */
  readonly group: string;
  #ctx: ScopeContext;

  /** @internal Made by `queue.forGroup`. */
  constructor(group: string, ctx: ScopeContext) {
    checkGroup("Cannot scope a producer", group);
    this.group = group;
    this.#ctx = ctx;
  }

  /**
   * Enqueues a job in this group: `queue.enqueue` with `group` set.
   *
   * @throws {ValidationError} If `options.group` names another group, and as `queue.enqueue`.
   */
  async enqueue<T extends AnyTask | string>(
    task: T,
    data: T extends AnyTask ? DataOf<T> : unknown,
    options: EnqueueOptions = {},
  ): Promise<JobHandle<T extends AnyTask ? ResultOf<T> : unknown>> {
    return await this.#ctx.enqueue(task, data, this.#scoped(options, -1)) as JobHandle<
      T extends AnyTask ? ResultOf<T> : unknown
    >;
  }

  /**
   * Enqueues many jobs in this group: `queue.enqueueMany` with `group` set on each.
   *
   * @throws {ValidationError} If an item's `group` names another group, and as
   * `queue.enqueueMany`.
   */
  async enqueueMany<T extends AnyTask | string>(
    task: T,
    items: Iterable<EnqueueItem<T extends AnyTask ? DataOf<T> : unknown>>,
    options: EnqueueManyOptions = {},
  ): Promise<JobHandle<T extends AnyTask ? ResultOf<T> : unknown>[]> {
    const scoped = Array.from(items, (item, i) => this.#scoped(item, i));
    return await this.#ctx.enqueueMany(task, scoped, options) as JobHandle<
      T extends AnyTask ? ResultOf<T> : unknown
    >[];
  }

  /** A handle on job `id` that sees it only if it is in this group. */
  job<Result = unknown>(id: string): JobHandle<Result> {
    return this.#ctx.job(id) as JobHandle<Result>;
  }

  #scoped<O extends EnqueueOptions>(options: O, index: number): O {
    if (typeof options !== "object" || options === null) return options;
    if (options.group !== undefined && options.group !== this.group) {
      const where = index < 0 ? "" : `: item ${index}`;
      throw new ValidationError(
        `Cannot enqueue in group ${JSON.stringify(this.group)}${where}: group is ${
          show(options.group)
        }; a scoped producer enqueues in its own group only`,
      );
    }
    return { ...options, group: this.group };
  }
}

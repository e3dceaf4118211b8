/**
 * Enqueueing: check every item, encode and sign it, then write the batch in ENQUEUE script
 * calls, pipelined. Nothing is written until every item has passed, and a failed write says
 * why in sluice's terms (out of memory, Redis unreachable) and how much of the batch got in.
 *
 * @module
 */
import { WEBHOOK_TASK } from "./webhook.ts";
import { activeTraceparent } from "./trace.ts";
import type { ChainableCommander } from "ioredis";
import { abortable } from "./async.ts";
import type { Backoff } from "./backoff.ts";
import {
  decodeData,
  encodeData,
  encodeExtras,
  GROUP,
  GROUP_RULE,
  oversize,
  uuidv7,
  validWebhook,
  WEBHOOK_RULE,
  WIRE_VERSION,
  type WireJob,
} from "./codec.ts";
import {
  ConnectionError,
  DurabilityError,
  isOutOfMemory,
  OutOfMemoryError,
  PayloadTooLargeError,
  toError,
  ValidationError,
} from "./errors.ts";
import { type HandleContext, JobHandle } from "./handle.ts";
import { checkName, type Keys } from "./keys.ts";
import { checkItem, schedule, wireOptions } from "./_items.ts";
import { type Durability, shortfall } from "./durable.ts";
import { show } from "./_options.ts";
import { describeRedis, type RedisConfig } from "./redis/connect.ts";
import { isConnectionLoss, lastConnectionError, whenReady } from "./redis/health.ts";
import type { ScriptClient } from "./scripts/mod.ts";
import { enqueueArgs, enqueueHead, type EnqueueReply } from "./scripts/enqueue.ts";
import type { Signer } from "./sign.ts";
import { laneOf, type Lanes } from "./priority.ts";
import { type AnyTask, type Task, validate } from "./task.ts";

/** Options of one enqueued job, and of the call that enqueues it. */
export interface EnqueueOptions {
  /**
   * The job id: 1 to 200 characters. Defaults to a UUIDv7, which sorts by time.
   */
  id?: string;
  /**
   * Run no sooner than this many ms from now, measured on Redis's clock. 0 runs at once.
   *
   * @default {0}
   */
  delay?: number;
  /** Run no sooner than this time (a Date or epoch ms). Cannot be combined with `delay`. */
  at?: Date | number;
  /**
   * This job's retry policy; it wins over the task's. Backoff must be fixed or exponential
   * here (a function cannot travel in the entry).
   */
  retry?: { attempts?: number; backoff?: Exclude<Backoff, (...args: never) => unknown> };
  /** This job's timeout in ms; it wins over the task's. */
  timeout?: number;
  /**
   * The job's priority: one of the queue's `priorities`. Workers start jobs of the highest
   * non-empty priority first.
   *
   * @default {the queue's `defaultPriority`}
   */
  priority?: string;
  /**
   * The job's group, such as a tenant id: any text of 1 to 200 characters without control
   * characters. Workers take from groups with waiting jobs in turn, and a Worker's `groups`
   * option limits each group's running jobs and starts (see the README's Groups section). A
   * grouped job runs at the queue's lowest priority: `group` cannot be combined with
   * `priority`.
   *
   * @default {undefined} (no group: the job is not gated)
   */
  group?: string;
  /**
   * Where to POST the job's outcome when it ends (completed, dead or cancelled): an `http:` or
   * `https:` URL of at most 2,048 characters. The POST is a job of its own (task
   * `sluice.webhook`), enqueued by the script that ends this one, retried with backoff on a 5xx
   * or a network error; its body is JSON `{ id, task, state, result | error, finishedAt }`,
   * signed (header `sluice-signature`) when the queue has `signingKeys`. See the README's
   * Webhooks section.
   *
   * @default {undefined} (no POST)
   */
  webhook?: string;
  /**
   * Bounds the wait: the call rejects with `signal.reason` soon after the signal aborts, for
   * instance when Redis cannot be reached. It cannot take back what was sent: if the abort
   * comes after the job was handed to Redis (or to the client's queue while it reconnects),
   * the job may still be written. Give an `id` so that a retry of the call is deduplicated.
   *
   * @default {undefined} (wait until written or failed)
   */
  signal?: AbortSignal;
}

/** One item of `queue.enqueueMany()`: the job's data and its own options. */
export interface EnqueueItem<Data> extends Omit<EnqueueOptions, "signal"> {
  /** The job's data. Required: give `null` for none (`undefined` is written as `null`). */
  data: Data;
}

/** Options of a whole `queue.enqueueMany()` call. */
export interface EnqueueManyOptions {
  /**
   * Bounds the wait, as {@linkcode EnqueueOptions.signal} does: the call rejects with
   * `signal.reason` soon after it aborts. Script calls already sent (100 jobs each) may
   * still be written.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/** @internal What enqueueing needs from its queue. */
export interface EnqueueContext {
  /** The queue name, for messages. */
  readonly name: string;
  readonly keys: Keys;
  readonly maxPayloadBytes: number;
  readonly signer: Signer | undefined;
  /** Durable mode: a WAIT behind every pipeline. */
  readonly durability: Durability | undefined;
  /** The priorities' streams. */
  readonly lanes: Lanes;
  /** The events cap (0: no events). */
  readonly events: number;
  /** Resolves once the queue's priority list is known to match Redis's (or rejects). */
  ready(): Promise<void>;
  /** Where Redis is, for messages. */
  readonly redis: RedisConfig;
  /** For the handles returned. */
  readonly handles: HandleContext;
  /** The command connection. */
  client(): ScriptClient;
  /** Holds a write until it settles (or its signal aborts), so that closing the queue waits
   * for it. */
  track(write: Promise<unknown>): void;
}

/** Jobs per enqueue script call: big enough to spread the call's cost, small enough not to
 * hold Redis up (about a millisecond of work). */
const ENQUEUE_BATCH = 100;
/** Jobs per pipeline: each is sent as soon as it is built, so Redis runs one while the next is
 * serialized. */
const PIPELINE_JOBS = 1_000;

/** One job, checked and encoded, ready for the enqueue script. */
export interface Entry {
  id: string;
  /** The data as JSON text. */
  data: string;
  when: { mode: "delay" | "at"; ms: number } | undefined;
  /** Retry and timeout in wire form, if given. */
  options: WireOptions | undefined;
  /** The optional wire fields (retry, timeout, sig), flat; undefined if none. */
  extras: string[] | undefined;
  /** True if the id was made here (a UUIDv7): no earlier job can have it. */
  made: boolean;
  /** True if the job has a group: its call names the group keys. */
  grouped: boolean;
  /** The stream the job goes to (its priority's), when due. */
  stream: string;
  /** Its priority's lane (see priority.ts). */
  lane: number;
  /** Field pri: the priority's name, unless it is the lowest. */
  pri: string | undefined;
}

/** A job's trace, retry, timeout and group in wire form. */
export type WireOptions = {
  trace?: string;
  retry?: string;
  timeout?: number;
  group?: string;
  webhook?: string;
};

/**
 * Enqueues the jobs of `items`: checks them all, then writes them in pipelined batches.
 * What `queue.enqueueMany()` runs.
 *
 * @param q The queue's side of it.
 * @param task A task (its schema checks the data) or a task name.
 * @param items Each job's data and options; each must have its own `data` property.
 * @param options `signal` to bound the wait.
 * @returns One handle per item, in order.
 * @throws {ValidationError} If an item fails a check; nothing is written.
 * @throws {PayloadTooLargeError} If an item's data is over `maxPayloadBytes`; nothing is
 * written.
 * @throws {OutOfMemoryError} If Redis is at `maxmemory`; the message says how much got in.
 * @throws {ConnectionError} If Redis cannot be reached.
 *
 * @example
 * ```ts
 * import { Queue } from "./queue.ts";
 * import { startRedis } from "./testing.ts";
 * await using redis = await startRedis();
 * await using queue = new Queue("q", { redis: redis.url });
 * // Queue.enqueueMany() calls enqueueJobs() with the queue's EnqueueContext.
 * const handles = await queue.enqueueMany("t", [{ data: 1 }, { data: null, id: "b" }]);
 * console.log(handles.map((h) => h.id)[1]); // "b"
 * ```
 */
export function enqueueJobs(
  q: EnqueueContext,
  task: AnyTask | string,
  items: Iterable<EnqueueItem<unknown>>,
  options: EnqueueManyOptions = {},
): Promise<JobHandle[]> {
  return enqueue(q, task, items, options.signal, false);
}

/**
 * Enqueues one job: {@linkcode enqueueJobs} for `queue.enqueue()`, where `undefined` data is
 * written as `null`.
 *
 * @param q The queue's side of it.
 * @param task A task or a task name.
 * @param data The job's data.
 * @param options The job's options and `signal`.
 * @returns A handle on the job.
 *
 * @example
 * ```ts
 * import { Queue } from "./queue.ts";
 * import { startRedis } from "./testing.ts";
 * await using redis = await startRedis();
 * await using queue = new Queue("q", { redis: redis.url });
 * const handle = await queue.enqueue("t", undefined, { id: "a" }); // calls enqueueJob()
 * console.log(handle.id); // "a"
 * ```
 */
export async function enqueueJob(
  q: EnqueueContext,
  task: AnyTask | string,
  data: unknown,
  options: EnqueueOptions = {},
): Promise<JobHandle> {
  const [handle] = await enqueue(q, task, [{ ...options, data }], options.signal, true);
  return handle!;
}

async function enqueue(
  q: EnqueueContext,
  task: AnyTask | string,
  items: Iterable<EnqueueItem<unknown>>,
  signal: AbortSignal | undefined,
  single: boolean,
): Promise<JobHandle[]> {
  const name = typeof task === "string" ? task : (task as AnyTask)?.name;
  checkName("task name", name, "Cannot enqueue");
  if (name === WEBHOOK_TASK) {
    throw new TypeError(
      `Cannot enqueue: task name ${WEBHOOK_TASK} is reserved: workers deliver webhooks with it`,
    );
  }
  const action = `Cannot enqueue ${name}`;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(`${action}: signal must be an AbortSignal, got ${show(signal)}`);
  }
  signal?.throwIfAborted();
  const schema = typeof task !== "string" && (task as Task).schema !== undefined;
  const maxBytes = q.maxPayloadBytes;
  const { lanes } = q, { fallback } = lanes, lowest = lanes.streams.length - 1;
  const now = Date.now();
  const entries: Entry[] = [];
  // The caller's span, if tracing: every job of the call carries it (field trace, signed).
  const trace = activeTraceparent();
  for (const item of items) {
    if (!single) checkItem(action, item, entries.length);
    const id = item.id === undefined ? uuidv7() : item.id;
    const when = item.delay === undefined && item.at === undefined
      ? undefined
      : schedule(action, item);
    let options = item.retry === undefined && item.timeout === undefined
      ? undefined
      : wireOptions(action, item);
    const group = item.group;
    if (group !== undefined) {
      const where = single ? action : `${action}: item ${entries.length}`;
      if (typeof group !== "string" || !GROUP.test(group)) {
        throw new ValidationError(`${where}: group must be ${GROUP_RULE}, got ${show(group)}`);
      }
      if (item.priority !== undefined) {
        throw new ValidationError(
          `${where}: a grouped job cannot have a priority (got group ${
            JSON.stringify(group)
          } and priority ${show(item.priority)}): groups take turns at the lowest priority`,
        );
      }
      options = { ...options, group };
    }
    const webhook = item.webhook;
    if (webhook !== undefined) {
      if (!validWebhook(webhook)) {
        const where = single ? action : `${action}: item ${entries.length}`;
        throw new ValidationError(
          `${where}: webhook must be ${WEBHOOK_RULE}, got ${show(webhook)}`,
        );
      }
      options = { ...options, webhook };
    }
    if (trace !== undefined) options = { ...options, trace };
    if (typeof id !== "string" || id.length === 0 || id.length > 200) {
      throw new ValidationError(
        `${action}: id must be a string of 1 to 200 characters, got ${JSON.stringify(id)}`,
      );
    }
    let data: unknown = item.data;
    if (schema) data = await validate(`Cannot enqueue`, task as Task, data);
    let text: string;
    try {
      text = encodeData(data);
    } catch (err) {
      throw new ValidationError(
        `${action}: data is not JSON-serializable: ${toError(err).message}`,
        { cause: err },
      );
    }
    const size = oversize(text, maxBytes);
    if (size !== undefined) {
      throw new PayloadTooLargeError(
        `${action}: data must be at most maxPayloadBytes ${maxBytes} bytes of JSON, got ${size}`,
      );
    }
    // Consumers refuse such data (bad-json): say so now, before anything is written.
    if (text.includes("__proto__")) {
      try {
        decodeData(text);
      } catch (err) {
        throw new ValidationError(`${action}: ${toError(err).message}`, { cause: err });
      }
    }
    const lane = group !== undefined
      ? lowest
      : item.priority === undefined
      ? fallback
      : laneOf(single ? action : `${action}: item ${entries.length}`, lanes, item.priority);
    const pri = lane === lowest ? undefined : lanes.labels[lane];
    // Field pri is the same for every job of a script call (one stream each): sent once.
    const extras = options === undefined ? undefined : encodeExtras(options);
    const stream = lanes.streams[lane]!;
    entries.push({
      id,
      data: text,
      when,
      options,
      extras,
      made: item.id === undefined,
      grouped: group !== undefined,
      stream,
      lane,
      pri,
    });
  }
  if (entries.length === 0) return [];
  if (lanes.names.length > 0) await q.ready();
  if (q.signer !== undefined) await sign(q.signer, entries, name, now);
  signal?.throwIfAborted();
  const write = sendByPriority(q, action, entries, name, now, signal);
  // Closing the queue waits for the write, unless the caller gave up on it first.
  const result = signal === undefined ? write : abortable(write, signal);
  q.track(result);
  return result;
}

/** Fills in each entry's optional fields, with its signature by the current key. */
async function sign(signer: Signer, entries: Entry[], task: string, enq: number): Promise<void> {
  await Promise.all(entries.map(async (entry) => {
    const job: WireJob = {
      id: entry.id,
      task,
      data: entry.data,
      attempt: 1,
      enq,
      ...entry.options,
    };
    entry.extras = encodeExtras({ ...entry.options, sig: await signer.sign(job) });
  }));
}

/**
 * {@linkcode send}, with the entries grouped by priority when they have several: a script call
 * writes to one stream. They go in order within each priority, and the handles come back in
 * the order given.
 */
async function sendByPriority(
  q: EnqueueContext,
  action: string,
  entries: Entry[],
  task: string,
  now: number,
  signal: AbortSignal | undefined,
): Promise<JobHandle[]> {
  const lane = entries[0]!.lane;
  if (entries.every((entry) => entry.lane === lane)) {
    return send(q, action, entries, task, now, signal);
  }
  const order = entries.map((_, i) => i);
  order.sort((a, b) => entries[a]!.lane - entries[b]!.lane || a - b);
  const handles = await send(q, action, order.map((i) => entries[i]!), task, now, signal);
  const given: JobHandle[] = new Array(handles.length);
  order.forEach((i, k) => given[i] = handles[k]!);
  return given;
}

/** Writes checked entries: one script call per batch, the calls in pipelines. */
async function send(
  q: EnqueueContext,
  action: string,
  entries: Entry[],
  task: string,
  now: number,
  signal: AbortSignal | undefined,
): Promise<JobHandle[]> {
  const client = q.client();
  if (client.status !== "ready") {
    // A client that never connected is not handed commands to hold for ~33 s: we wait for it
    // here, and give up (writing nothing) once it is plainly unreachable or the signal aborts.
    const failure = await whenReady(client, signal);
    if (failure !== undefined) throw unreachable(q, action, client, failure, "");
    signal?.throwIfAborted();
  }
  const head = enqueueHead(q.keys, task, now, WIRE_VERSION);
  const durable = q.durability;
  // One script call per batch of jobs. The calls go in pipelines of PIPELINE_JOBS, each sent
  // once built: Redis runs the first while the client builds the next. In durable mode each
  // pipeline ends with a WAIT for its writes, in the same round trip.
  const sent: Promise<[Error | null, unknown][] | null>[] = [];
  for (let i = 0; i < entries.length; i += PIPELINE_JOBS) {
    const pipeline = client.pipeline() as unknown as ScriptClient;
    const end = Math.min(i + PIPELINE_JOBS, entries.length);
    // A call writes to one stream: a batch of mixed priorities is cut where they change.
    for (let j = i, to = j; j < end; j = to) {
      const { stream } = entries[j]!;
      to = j + 1;
      const most = Math.min(j + ENQUEUE_BATCH, end);
      while (to < most && entries[to]!.stream === stream) to++;
      const pri = entries[j]!.pri ?? "";
      pipeline.sluiceEnqueue(enqueueArgs(q.keys, stream, head, entries, j, to, pri, q.events));
    }
    if (durable !== undefined) pipeline.wait(durable.replicas, durable.timeout);
    sent.push((pipeline as unknown as ChainableCommander).exec());
  }
  // Every pipeline is awaited, so an error reports what the others wrote.
  const settled = await Promise.allSettled(sent);
  const results: [Error | null, unknown][] = [];
  let failed: Error | undefined;
  /** Durable mode: the jobs of pipelines whose WAIT fell short, and the fewest acks seen. */
  let unconfirmed: string[] | undefined, acknowledged = Infinity;
  let waitError: Error | undefined;
  for (let p = 0; p < settled.length; p++) {
    const outcome = settled[p]!;
    if (outcome.status === "rejected") {
      failed ??= toError(outcome.reason);
      continue;
    }
    const replies = outcome.value ?? [];
    if (durable !== undefined) {
      const wait = replies.pop();
      const acked = shortfall(wait, durable);
      if (acked !== undefined) {
        const start = p * PIPELINE_JOBS;
        unconfirmed ??= [];
        for (let j = start; j < Math.min(start + PIPELINE_JOBS, entries.length); j++) {
          unconfirmed.push(entries[j]!.id);
        }
        acknowledged = Math.min(acknowledged, acked);
        waitError ??= wait?.[0] ?? undefined;
      }
    }
    results.push(...replies);
  }
  failed ??= results.find(([err]) => err)?.[0] ?? undefined;
  if (failed) throw writeError(q, action, client, failed, results, entries.length);
  if (unconfirmed !== undefined) {
    throw unreplicated(q, action, durable!, acknowledged, unconfirmed, entries.length, waitError);
  }
  const handles: JobHandle[] = [];
  for (const [, replies] of results) {
    for (const reply of replies as EnqueueReply) {
      const { id } = entries[handles.length]!;
      handles.push(
        typeof reply === "string"
          // '' for a grouped job waiting in its group's line: no entry yet.
          ? new JobHandle(q.handles, id, reply === "" ? {} : { entryId: reply })
          : typeof reply === "number"
          ? new JobHandle(q.handles, id, { dueAt: reply })
          : new JobHandle(q.handles, id, { entryId: reply[0], dueAt: reply[1], duplicate: true }),
      );
    }
  }
  return handles;
}

/**
 * A write failed: out of memory and a lost connection get their own errors, which say how
 * many jobs were written.
 */
function writeError(
  q: EnqueueContext,
  action: string,
  client: ScriptClient,
  err: Error,
  results: [Error | null, unknown][],
  total: number,
): Error {
  const oom = isOutOfMemory(err);
  if (!oom && !isConnectionLoss(err)) return err;
  let written = 0;
  for (const [failed, replies] of results) {
    if (failed) continue;
    // A duplicate's reply is a pair; a written job's is its entry id or due time.
    for (const reply of replies as EnqueueReply) if (!Array.isArray(reply)) written++;
  }
  if (!oom) {
    // Calls without a reply may have run too before the connection went.
    const part = written > 0 ? ` (at least ${written} of ${total} jobs were written)` : "";
    return unreachable(q, action, client, err, part);
  }
  const part = written > 0
    ? ` (${written} of ${total} jobs were written, in whole batches of ${ENQUEUE_BATCH})`
    : "";
  return new OutOfMemoryError(
    `Cannot enqueue to ${q.name}: Redis is out of memory (maxmemory reached): ${err.message}${part}`,
    { cause: err },
  );
}

/**
 * "Cannot enqueue t on queue q: 0 of 1 replicas acknowledged the write within 100 ms; the job
 * may or may not have been written ..."
 */
function unreplicated(
  q: EnqueueContext,
  action: string,
  durable: Durability,
  acknowledged: number,
  ids: string[],
  total: number,
  cause: Error | undefined,
): DurabilityError {
  const jobs = ids.length === 1
    ? "the job"
    : ids.length === total
    ? `the ${total} jobs`
    : `${ids.length} of the ${total} jobs`;
  const failed = cause === undefined ? "" : ` (WAIT failed: ${cause.message})`;
  return new DurabilityError(
    `${action} on queue ${q.name}: ${acknowledged} of ${durable.replicas} replicas acknowledged the write within ${durable.timeout} ms${failed}; ${jobs} may or may not have been written (Redis ran the write, but a failover before a replica has it would lose it): enqueue again with the same ids to be sure, a known id is not written twice`,
    { acknowledged, required: durable.replicas, ids, ...(cause ? { cause } : {}) },
  );
}

/** "Cannot enqueue t on queue q: Redis at 127.0.0.1:1 is unreachable (ECONNREFUSED)" */
function unreachable(
  q: EnqueueContext,
  action: string,
  client: ScriptClient,
  err: Error,
  part: string,
): ConnectionError {
  const last = lastConnectionError(client) ?? err;
  const code = (last as { code?: unknown }).code;
  const reason = typeof code === "string" && code !== "" ? code : last.message;
  return new ConnectionError(
    `${action} on queue ${q.name}: Redis at ${
      describeRedis(q.redis)
    } is unreachable (${reason})${part}`,
    { cause: last },
  );
}

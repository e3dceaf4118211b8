/**
 * The job stream: XREADGROUP on its own blocking connection, read as a web `ReadableStream`,
 * with exact prefetch, batched lease renewal, XAUTOCLAIM reclaim and prompt abort.
 *
 * One loop does all reading. Each pull hands out one job: from the prefetch buffer if it has
 * one, else from a read that asks for exactly the free room (limit minus jobs held). A job is
 * held from the read until it is settled; a slow consumer settles nothing, so reads stop.
 * Before a read, once per tick, the loop runs XAUTOCLAIM for idle deliveries of dead peers.
 *
 * @module
 */
import { Batcher } from "./_batch.ts";
import { settlesWithin } from "./async.ts";
import {
  dataError,
  decodeData,
  type DecodeFailure,
  decodeFields,
  isFailure,
  mayBeMangled,
  validUtf8,
  type WireJob,
} from "./codec.ts";
import { CancelledError, LeaseLostError, toError } from "./errors.ts";
import {
  abort,
  type DeadReason,
  isLeased,
  Job,
  type Lessor,
  markLost,
  reclaimed,
  trimText,
} from "./job.ts";
import type { Signer } from "./sign.ts";
import type { Keys } from "./keys.ts";
import type { RetryOptions } from "./backoff.ts";
import { close, connect, processName, type RedisConfig } from "./redis.ts";
import type { ScriptClient } from "./scripts/mod.ts";
import { cancelledArgs } from "./scripts/cancelled.ts";
import { markDeadArgs } from "./scripts/mark_dead.ts";
import { promote } from "./scripts/promote.ts";
import { reclaimArgs } from "./scripts/reclaim.ts";
import { renewArgs } from "./scripts/renew.ts";
import { retire as retireConsumer } from "./scripts/retire.ts";
import { settleArgs, type SettleOp } from "./scripts/settle.ts";
import type { Logger } from "./_log.ts";
import { checkInt, checkLimit, MAX_MS, show } from "./_options.ts";

/** Options of `queue.consume()`. */
export interface ConsumeOptions {
  /** Ends the stream: no read is sent after it aborts, and unread prefetched jobs are released. */
  signal?: AbortSignal;
  /**
   * How many jobs the stream may hold at once: read but not yet settled, the ones in your
   * hands included. Each read asks for exactly the free room.
   *
   * @default {16}
   */
  prefetch?: number;
  /**
   * A delivery idle this long (ms) is presumed dead and may be claimed by another consumer.
   * Held jobs are renewed every `idleTimeout / 3`, on a timer independent of your code; an
   * event loop blocked longer than `idleTimeout` can lose its jobs.
   *
   * @default {30_000}
   */
  idleTimeout?: number;
  /**
   * A job delivered more than this many times (crash loops) goes to the dead letters with
   * reason `delivery-limit` instead of being run again. `Infinity` turns the check off.
   *
   * @default {5}
   */
  maxDeliveries?: number;
  /**
   * The consumer name in the group.
   *
   * @default {"<host>-<pid>-<random>"}
   */
  consumer?: string;
}

/** @internal What a consumer needs from its queue. */
export interface QueueContext {
  readonly name: string;
  readonly keys: Keys;
  readonly group: string;
  /** How long (ms) finished jobs' records and results are kept; 0 keeps none. */
  readonly keepResult: number;
  /** The most dead letters kept; 0 is unbounded. */
  readonly maxDead: number;
  /** The most UTF-8 bytes field data may hold. */
  readonly maxPayloadBytes: number;
  /** Checks signatures, when signing keys are set. */
  readonly signer: Signer | undefined;
  readonly redis: RedisConfig;
  readonly logger: Logger;
  client(): ScriptClient;
  ensureGroup(force?: boolean): Promise<void>;
}

/** A read or claimed entry: its id, delivery count and flat fields. */
type Entry = [entryId: string, deliveries: number, fields: string[]];
/** An entry decoded, or why it cannot run. */
type Verdict = WireJob | DecodeFailure | {
  reason: "bad-encoding" | "bad-signature";
  error: string;
};

/** Most delayed jobs moved to the stream per promotion call. */
const PROMOTE_BATCH = 1_000;

const MAX_BLOCK_MS = 10_000;
/** Most deliveries per renewal or settle script call; bigger sets are split. */
const CHUNK = 1_000;
/** How long a cancel message is remembered, for a read reply it may have overtaken. */
const CANCEL_MEMORY_MS = 10_000;
/** How long a shutdown waits on Redis before it gives up and lets leases lapse. */
const SHUTDOWN_WAIT_MS = 5_000;
/** An adaptive window holds about this many ms of work beyond what runs. */
const ADAPT_TARGET_MS = 5;
/** The shortest time (ms) over which an adaptive window measures the rate of settles. */
const ADAPT_EVERY_MS = 10;
/** How often (ms) an adaptive window is measured when settles are rare (jobs turned slow). */
const ADAPT_CHECK_MS = 100;
/** Prefetched jobs that would take longer than this (ms) to start are given back. */
const ADAPT_DRAIN_MS = 1_000;

/**
 * @internal The machinery behind `queue.consume()`. A `Worker` uses it directly, for the held
 * set and the done promise.
 */
export class Consumer implements Lessor {
  readonly name: string;
  readonly idleTimeout: number;
  readonly maxDeliveries: number;
  readonly readable: ReadableStream<Job>;
  /** Every job read and not yet settled, handed out or not, by entry id. */
  readonly held = new Map<string, Job>();
  #ctx: QueueContext;
  #limit: number;
  /** When set, the window follows the rate of settles (see `adapt()`). */
  #adapt: { base: number; min: number; max: number; since: number; ended: number } | undefined;
  #adaptTick: ReturnType<typeof setInterval> | undefined;
  #buffer: Job[] = [];
  #burying = 0;
  /** Entries asked for by reads still in flight: room they may fill. */
  #requested = 0;
  /**
   * Held jobs acked or cancelled by settle calls under way: room that the reads pipelined
   * behind those calls may fill (Redis runs them after the settle).
   */
  #settling = 0;
  #promoteFailures = 0;
  #signal: AbortSignal | undefined;
  #blocking: ScriptClient;
  #blockingId: number | undefined;
  #subscriber: ScriptClient;
  /** Local time at which the next delayed job is due (0: check now; Infinity: none). */
  #dueAt = 0;
  /** One loop iteration talking to Redis (group check, reclaim, read), while under way. */
  #busy: Promise<void> | undefined;
  /** The blocking read, while under way. */
  #read: Promise<void> | undefined;
  #controller: ReadableStreamDefaultController<Job> | undefined;
  #pulling = false;
  #stopping = false;
  #finished = false;
  #done = Promise.withResolvers<void>();
  #roomWaiter: PromiseWithResolvers<void> | undefined;
  #tick: ReturnType<typeof setInterval>;
  #nextReclaim = 0;
  #reclaimCursor = "0-0";
  #reclaims = 0;
  #renewing = false;
  #failures = 0;
  #settler: Batcher<SettleOp, number>;
  /** Subscribed to the cancel channel, with no disconnect since `#epoch` last moved. */
  #listening = false;
  #epoch = 0;
  /** Cancel messages of the last few seconds, by job id, with the time each arrived. */
  #cancels = new Map<string, number>();

  constructor(ctx: QueueContext, options: ConsumeOptions = {}) {
    const {
      signal,
      prefetch = 16,
      idleTimeout = 30_000,
      maxDeliveries = 5,
      consumer = consumerName(),
    } = options;
    const action = `Cannot consume ${ctx.name}`;
    checkInt(action, "prefetch", prefetch, 1, 100_000);
    checkInt(action, "idleTimeout", idleTimeout, 100, MAX_MS);
    checkLimit(action, "maxDeliveries", maxDeliveries, 1);
    if (typeof consumer !== "string" || consumer.length === 0 || consumer.length > 200) {
      throw new TypeError(
        `${action}: consumer must be a name of 1 to 200 characters, got ${show(consumer)}`,
      );
    }
    this.#ctx = ctx;
    this.name = consumer;
    this.#limit = prefetch;
    this.idleTimeout = idleTimeout;
    this.maxDeliveries = maxDeliveries;
    // Two settle calls may be under way, each with at most half the window: Redis settles
    // one half while this process runs the other.
    this.#settler = new Batcher(
      (ops) => this.#flushSettles(ops),
      2,
      Math.max(1, Math.ceil(prefetch / 2)),
      () => this.#buffer.length,
    );
    this.#blocking = connect(ctx.redis, "blocking", consumer);
    this.#blocking.on("close", () => this.#blockingId = undefined);
    this.#subscriber = connect(ctx.redis, "subscriber", consumer);
    this.#subscriber.on("message", (channel: string, message: string) => {
      if (channel === ctx.keys.wake) this.#due(message);
      else if (channel === ctx.keys.cancel) this.#cancel(message);
    });
    // A wake-up missed while (re)subscribing costs at most one tick: the loop also looks at the
    // delayed set once a tick, and at once whenever the subscriber is (re)connected.
    this.#subscriber.on("ready", () => {
      this.#dueAt = 0;
      this.#interrupt();
      this.#listen();
    });
    this.#subscriber.on("close", () => {
      this.#listening = false;
      this.#epoch++;
    });
    this.#listen();
    this.#tick = setInterval(() => this.#renew(), Math.max(1, Math.floor(idleTimeout / 3)));
    this.readable = new ReadableStream<Job>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: async (controller) => {
        this.#pulling = true;
        const job = await this.#next().finally(() => this.#pulling = false);
        if (job === undefined) this.#closeReadable();
        else controller.enqueue(job);
      },
      cancel: () => {
        this.#controller = undefined;
        this.#stop();
      },
    }, { highWaterMark: 0 });
    this.#renew();
    if (signal?.aborted) this.#stop();
    signal?.addEventListener("abort", this.#onAbort, { once: true });
    this.#signal = signal;
  }

  /** How many jobs the consumer may hold at once now: read and not yet settled. */
  get limit(): number {
    return this.#limit;
  }

  /**
   * Lets the window follow the work: `base` plus enough jobs for about ADAPT_TARGET_MS of work
   * at the rate jobs are settled, kept from `min` to `max`. Fast jobs then travel in big
   * batches (fewer round trips per job), while slow jobs are never hoarded: at their rate the
   * window stays at `base + min`. Reads still ask for exactly the free room of the window.
   */
  adapt(base: number, min: number, max: number): void {
    this.#adapt = { base, min, max, since: performance.now(), ended: 0 };
    this.#resize(base + min);
    // Settles measure the rate as they go; when they stop coming (every slot busy with slow
    // jobs), this timer notices within ADAPT_CHECK_MS. One timer per consumer, none per job.
    this.#adaptTick ??= setInterval(
      () => this.#measure(performance.now(), ADAPT_CHECK_MS),
      ADAPT_CHECK_MS,
    );
  }

  #resize(limit: number): void {
    this.#limit = limit;
    this.#settler.most = Math.max(1, Math.ceil(limit / 2));
    this.#wake();
  }

  /** Measures the rate of settles, once enough time has passed, and moves the window. */
  #measure(now: number, every: number): void {
    const adapt = this.#adapt!;
    const elapsed = now - adapt.since;
    if (elapsed < every) return;
    const rate = adapt.ended / elapsed; // jobs per ms
    adapt.since = now;
    adapt.ended = 0;
    const limit = adapt.base +
      Math.min(adapt.max, Math.max(adapt.min, Math.ceil(rate * ADAPT_TARGET_MS)));
    if (limit === this.#limit) return;
    const shrinking = limit < this.#limit;
    this.#resize(limit);
    if (shrinking) this.#giveBack(rate);
  }

  /**
   * The window shrank because jobs turned slow: prefetched jobs beyond it that would wait more
   * than ADAPT_DRAIN_MS to start go back to the stream (at its tail, no attempt charged), for
   * idle peers to take, instead of being hoarded here. The newest are given back; the oldest
   * stay first in line. A brief dip in a fast stream gives back nothing: its buffer drains in
   * milliseconds at the rate measured.
   */
  #giveBack(rate: number): void {
    const buffered = this.#buffer.length;
    if (this.#stopping || buffered === 0 || buffered <= rate * ADAPT_DRAIN_MS) return;
    const keep = Math.max(0, this.#limit - (this.held.size - buffered));
    for (const job of this.#buffer.splice(keep)) {
      job.release().catch((err) =>
        this.abandon(job, new LeaseLostError(`Could not give back job ${job.id}`, { cause: err }))
      );
    }
  }

  /**
   * @internal The next job to run: at once from the prefetch buffer when it has one, else once
   * read. Undefined once the consumer stops. A `Worker` pulls with this instead of `readable`.
   */
  next(): Job | Promise<Job | undefined> {
    if (!this.#stopping) {
      for (let job = this.#buffer.shift(); job !== undefined; job = this.#buffer.shift()) {
        if (!job.settled) return job;
      }
    }
    return this.#next();
  }

  #onAbort = (): void => this.#stop();

  /** Resolves when the stream has ended, every held job is settled, and the consumer retired. */
  get done(): Promise<void> {
    return this.#done.promise;
  }

  /** Stops reading: no read is sent after this, and a blocking read is cut short. */
  stop(): void {
    this.#stop();
  }

  /**
   * Releases every held job, then retires. If Redis does not answer within `wait` ms, it gives
   * up on the rest: their leases lapse and peers reclaim them after idleTimeout.
   */
  async shutdown(wait: number = SHUTDOWN_WAIT_MS): Promise<void> {
    this.#stop();
    const releases = [...this.held.values()].map((job) => job.release());
    await settlesWithin(Promise.allSettled(releases), wait);
    await this.#finish(wait);
  }

  // Lessor: called by jobs.
  settle(op: SettleOp): Promise<number> {
    return this.#settler.push(op);
  }

  forget(job: Job): void {
    // Only this very job: after a self-reclaim the entry id may be held by the same Job again.
    if (this.held.get(job.entryId) !== job) return;
    this.held.delete(job.entryId);
    this.#wake();
    if (this.held.size === 0 && this.#stopping) void this.#maybeFinish();
  }

  #wake(): void {
    this.#roomWaiter?.resolve();
    this.#roomWaiter = undefined;
  }

  #room(): number {
    return this.#limit - this.held.size - this.#burying - this.#requested;
  }

  /**
   * The room a blocking read may fill. An adaptive window grows only through the reads behind
   * settles, which follow the measured rate; a blocking read (the stream was empty, or we are
   * starting) knows nothing of the jobs it will get, so it fills no more than the base window:
   * after a burst of fast jobs, a worker waiting on an empty stream must not take a pile of
   * slow ones.
   */
  #readRoom(): number {
    const room = this.#room();
    const adapt = this.#adapt;
    if (adapt === undefined) return room;
    return Math.min(room, room - this.#limit + adapt.base + adapt.min);
  }

  async #next(): Promise<Job | undefined> {
    while (true) {
      if (this.#stopping) {
        this.#releaseBuffer();
        return undefined;
      }
      const job = this.#buffer.shift();
      if (job !== undefined) {
        if (!job.settled) return job;
        continue;
      }
      if (this.#room() <= 0) {
        this.#roomWaiter ??= Promise.withResolvers();
        await this.#roomWaiter.promise;
        continue;
      }
      this.#busy = this.#fetch();
      await this.#busy;
      this.#busy = undefined;
    }
  }

  /** One round: make sure the group exists, reclaim if due, else read. Never throws. */
  async #fetch(): Promise<void> {
    try {
      await this.#ctx.ensureGroup();
      if (!this.#stopping && Date.now() >= this.#dueAt) await this.#promoteOrWait();
      if (!this.#stopping && Date.now() >= this.#nextReclaim) await this.#reclaim();
      if (this.#buffer.length === 0 && !this.#stopping && this.#room() > 0) {
        if (this.#readRoom() > 0) {
          this.#read = this.#readOnce();
          await this.#read.finally(() => this.#read = undefined);
        } else {
          // The rest of the window is filled by the reads behind settles, as they land.
          this.#roomWaiter ??= Promise.withResolvers();
          await this.#roomWaiter.promise;
        }
      }
      this.#failures = 0;
    } catch (err) {
      await this.#recover(err);
    }
  }

  async #readOnce(): Promise<void> {
    const blocking = this.#blocking;
    if (this.#blockingId === undefined) {
      this.#blockingId = Number(await blocking.client("ID"));
      if (this.#stopping) return;
    }
    const count = this.#readRoom();
    if (count <= 0) return;
    const epoch = this.#listening ? this.#epoch : -1;
    const wakeAt = Math.min(this.#nextReclaim, this.#dueAt);
    const block = Math.max(1, Math.min(MAX_BLOCK_MS, wakeAt - Date.now()));
    // Redis times blocked reads out on its own event loop tick (up to 100 ms late at hz 10):
    // when a delayed job is next due, a local timer cuts the read short on time instead.
    const timer = this.#dueAt <= wakeAt && this.#dueAt - Date.now() < MAX_BLOCK_MS
      ? setTimeout(() => this.#interrupt(), Math.max(0, this.#dueAt - Date.now()))
      : undefined;
    this.#requested += count;
    let reply: unknown;
    try {
      reply = await blocking.xreadgroup(
        "GROUP",
        this.#ctx.group,
        this.name,
        "COUNT",
        count,
        "BLOCK",
        block,
        "STREAMS",
        this.#ctx.keys.stream,
        ">",
      );
    } catch (err) {
      this.#requested -= count;
      throw err;
    } finally {
      clearTimeout(timer);
    }
    const entries = (reply as [string, [string, string[]][]][] | null)?.[0]?.[1] ?? [];
    // What came back stays counted as requested until it is held (or being buried): checking
    // signatures may take a while, and a settle must not read that room again meanwhile.
    this.#requested -= count - entries.length;
    await this.#admitFresh(entries, epoch);
  }

  /**
   * Admits entries fresh from a read (first deliveries), then gives back the room they were
   * counted in as requested. Listening the whole time since before the read (`epoch`), we hear
   * of every cancel that landed after it (those before it deleted the entry); else it asks
   * the records.
   */
  async #admitFresh(entries: [string, string[]][], epoch: number): Promise<void> {
    const batch = entries.map(([entryId, fields]): Entry => [entryId, 1, fields]);
    let admitted: Job[];
    try {
      const admission = this.#admitAll(batch);
      admitted = Array.isArray(admission) ? admission : await admission;
    } finally {
      this.#requested -= entries.length;
    }
    if (epoch !== this.#epoch || !this.#listening) await this.#checkCancelled(admitted);
  }

  /**
   * Promotes, and if Redis refuses (at maxmemory the XADD is refused), logs it and tries again
   * later: reading what is already in the stream must go on.
   */
  async #promoteOrWait(): Promise<void> {
    try {
      await this.#promote();
      this.#promoteFailures = 0;
    } catch (err) {
      if (!toError(err).message.startsWith("OOM")) throw err;
      this.#promoteFailures++;
      const wait = Math.min(100 * 2 ** Math.min(this.#promoteFailures, 6), 5_000);
      this.#dueAt = Date.now() + wait;
      if (this.#promoteFailures === 1 || this.#promoteFailures % 10 === 0) {
        this.#ctx.logger.error(
          `sluice: queue ${this.#ctx.name}: could not move due delayed jobs to the stream (${this.#promoteFailures} in a row), retrying in ${wait} ms`,
          err,
        );
      }
    }
  }

  /** Moves due delayed jobs to the stream, and learns when the next one is due. */
  async #promote(): Promise<void> {
    const [moved, wait] = await promote(this.#ctx.client(), this.#ctx, PROMOTE_BATCH);
    if (moved === PROMOTE_BATCH) this.#dueAt = 0; // more are due right now
    else this.#dueAt = Date.now() + (wait < 0 ? this.#tickMs() : Math.min(wait, this.#tickMs()));
  }

  /** A producer or a retry scheduled a job due in `message` ms: wake up in time for it. */
  #due(message: string): void {
    const wait = Number(message);
    if (!Number.isFinite(wait) || this.#stopping) return;
    const at = Date.now() + Math.max(0, wait);
    if (at >= this.#dueAt) return;
    this.#dueAt = at;
    // A read blocking past the new due time is cut short, so the loop can promote.
    this.#interrupt();
  }

  /** (Re)subscribes to the wake and cancel channels; listening once Redis confirms. */
  #listen(): void {
    const epoch = this.#epoch;
    this.#subscriber.subscribe(this.#ctx.keys.wake, this.#ctx.keys.cancel).then(() => {
      if (epoch === this.#epoch) this.#listening = true;
    }, () => {});
  }

  /** Ends a blocking read now, as if it had timed out; the loop then looks again. */
  #interrupt(): void {
    if (this.#read !== undefined && this.#blockingId !== undefined) {
      this.#ctx.client().client("UNBLOCK", this.#blockingId).catch(() => {});
    }
  }

  /**
   * A producer cancelled job `id`: if we hold it, abort its signal with `CancelledError`. Its
   * holder settles it: a Worker acks it unrun (or stops its handler), ending it `cancelled`;
   * in a bare `for await` loop, check `job.signal` and `ack()`.
   */
  #cancel(message: string): void {
    // "<job id>\n<entry id>" (the entry id of the delivery to stop; older senders omit it).
    const cut = message.indexOf("\n");
    const id = cut < 0 ? message : message.slice(0, cut);
    const entry = cut < 0 ? undefined : message.slice(cut + 1);
    for (const job of this.held.values()) {
      if (job.id === id) abort(job, new CancelledError(`Job ${id} was cancelled`));
    }
    // The message may beat the read reply that brings the job: remember it for a while, by
    // the delivery's entry id, so a later job reusing the id is not touched.
    const now = Date.now();
    for (const [old, at] of this.#cancels) {
      if (now - at < CANCEL_MEMORY_MS) break;
      this.#cancels.delete(old);
    }
    const key = entry || id;
    this.#cancels.delete(key);
    this.#cancels.set(key, now);
  }

  /** Was this delivery cancelled by a message that came before it? */
  #cancelledEarly(job: Job): boolean {
    const at = this.#cancels.get(job.entryId) ?? this.#cancels.get(job.id);
    return at !== undefined && Date.now() - at < CANCEL_MEMORY_MS;
  }

  async #reclaim(): Promise<void> {
    // What this reclaim may claim is room nothing else may read into meanwhile (a settle's
    // read among them), until the claimed jobs are held.
    const room = Math.max(0, this.#room());
    this.#requested += room;
    try {
      await this.#reclaimInto(room);
    } finally {
      this.#requested -= room;
    }
  }

  async #reclaimInto(room: number): Promise<void> {
    const prune = this.#reclaims++ % 10 === 0;
    this.#nextReclaim = Date.now() + this.#tickMs();
    const { logger } = this.#ctx;
    const [cursor, claimed, deleted, buried] = await this.#ctx.client().sluiceReclaim(
      reclaimArgs(this.#ctx, this.name, {
        minIdle: this.idleTimeout,
        cursor: this.#reclaimCursor,
        count: room,
        maxDeliveries: this.maxDeliveries,
        prune,
      }),
    );
    this.#reclaimCursor = cursor;
    if (deleted.length > 0) {
      logger.warn(
        `sluice: queue ${this.#ctx.name}: ${deleted.length} pending entries were trimmed from the stream before they were settled; dropped them from the pending list (${
          deleted.slice(0, 5).join(", ")
        }${deleted.length > 5 ? ", ..." : ""})`,
      );
    }
    // Admit what was claimed first: it is ours in Redis now, whatever happens next.
    const fresh: Entry[] = [];
    for (const [entryId, deliveries, fields] of claimed) {
      const mine = this.held.get(entryId);
      if (mine === undefined) {
        fresh.push([entryId, deliveries, fields]);
        continue;
      }
      // Our own job went idle (a blocked event loop, or renewals failing) and we claimed it
      // back: it is still ours, under a new delivery count. Keep one Job, never two.
      reclaimed(mine, deliveries);
      this.#ctx.logger.warn(
        `sluice: queue ${this.#ctx.name}: job ${mine.id} sat idle past idleTimeout (${this.idleTimeout} ms) while held; was the event loop blocked?`,
      );
    }
    await this.#checkCancelled(fresh.length === 0 ? [] : await this.#admitAll(fresh));
    const ids = buried.filter((id) => id !== "");
    if (buried.length > 0) {
      logger.warn(
        `sluice: queue ${this.#ctx.name}: ${buried.length} jobs went to the dead letters with reason delivery-limit (delivered more than ${this.maxDeliveries} times)`,
      );
    }
    if (ids.length > 0) {
      const error = `delivered more than maxDeliveries ${this.maxDeliveries} times`;
      await this.#ctx.client().sluiceMarkDead(markDeadArgs(this.#ctx, ids, error)).catch((err) =>
        logger.error(`sluice: queue ${this.#ctx.name}: could not mark dead`, err)
      );
    }
  }

  /**
   * Before jobs are handed out, one pipelined look at their records: a cancel can land while
   * a read reply is on its way, or while a crashed worker held the job, and its message then
   * reaches nobody. CANCEL marks the record before it publishes, so this look cannot miss it.
   */
  async #checkCancelled(jobs: Job[]): Promise<void> {
    if (jobs.length === 0) return;
    const cancelled = await this.#ctx.client().sluiceCancelled(
      cancelledArgs(this.#ctx.keys, jobs),
    );
    for (const position of cancelled) this.#cancel(jobs[position - 1]!.id);
  }

  /**
   * Turns a batch of entries into held jobs, and dead-letters those that cannot run. Checks
   * that need a round trip or Web Crypto (raw bytes, signatures) run for the whole batch before
   * any job is buffered; without signing keys and without a U+FFFD in sight there are none, and
   * no await either.
   */
  #admitAll(batch: Entry[]): Job[] | Promise<Job[]> {
    const { signer, maxPayloadBytes } = this.#ctx;
    if (signer === undefined && !batch.some(([, , fields]) => mayBeMangled(fields))) {
      return this.#admitDecoded(
        batch,
        batch.map(([, , fields]) => decodeFields(fields, maxPayloadBytes)),
        true,
      );
    }
    return this.#admitChecked(batch, signer);
  }

  async #admitChecked(batch: Entry[], signer: Signer | undefined): Promise<Job[]> {
    const mangled = await this.#badBytes(batch.filter(([, , fields]) => mayBeMangled(fields)));
    const verdicts = batch.map(([entryId, , fields]): Verdict =>
      mangled.has(entryId)
        ? { reason: "bad-encoding", error: "a field is not valid UTF-8" }
        : decodeFields(fields, this.#ctx.maxPayloadBytes)
    );
    if (signer !== undefined) {
      const signed = await Promise.all(
        verdicts.map((v) => isFailure(v) ? true : signer.verify(v)),
      );
      signed.forEach((ok, i) => {
        if (ok) return;
        const { sig } = verdicts[i] as WireJob;
        verdicts[i] = {
          reason: "bad-signature",
          error: sig === undefined
            ? "the entry is not signed (no field sig) and signing keys are set"
            : "field sig does not match the entry under any signing key",
        };
      });
    }
    return this.#admitDecoded(batch, verdicts, signer === undefined);
  }

  /**
   * The entry ids, among `suspects`, whose raw bytes are not valid UTF-8. ioredis decoded them
   * with U+FFFD for invalid bytes: a second look, as bytes, tells a real U+FFFD from a mangled
   * byte. An entry gone from the stream meanwhile cannot be checked, and counts as bad.
   */
  async #badBytes(suspects: Entry[]): Promise<Set<string>> {
    const bad = new Set<string>();
    if (suspects.length === 0) return bad;
    const pipeline = this.#ctx.client().pipeline();
    for (const [entryId] of suspects) {
      pipeline.xrangeBuffer(this.#ctx.keys.stream, entryId, entryId);
    }
    const replies = (await pipeline.exec()) ?? [];
    suspects.forEach(([entryId], i) => {
      const [err, reply] = replies[i] ?? [new Error("no reply")];
      if (err) throw err;
      const raw = (reply as [Uint8Array, Uint8Array[]][])[0]?.[1];
      if (raw === undefined || !validUtf8(raw)) bad.add(entryId);
    });
    return bad;
  }

  /**
   * Admits decoded entries, in order. An entry that decoded, and whose signature checked out
   * when keys are set, has a job id to trust: its record is marked dead with it.
   */
  #admitDecoded(batch: Entry[], verdicts: Verdict[], trusted: boolean): Job[] {
    const admitted: Job[] = [];
    batch.forEach(([entryId, deliveries], i) => {
      const verdict = verdicts[i]!;
      if (isFailure(verdict)) {
        const id = verdict.reason === "too-large" && trusted ? jobIdOf(batch[i]![2]) : undefined;
        this.#bury(entryId, deliveries, verdict.error, verdict.reason, id);
        return;
      }
      let data: unknown;
      try {
        data = decodeData(verdict.data);
      } catch (err) {
        this.#bury(entryId, deliveries, dataError(err), "bad-json", verdict.id);
        return;
      }
      admitted.push(this.#admit(entryId, deliveries, verdict, data));
    });
    return admitted;
  }

  /** Turns a decoded entry into a held job. */
  #admit(entryId: string, deliveries: number, decoded: WireJob, data: unknown): Job {
    let policy: { retry?: RetryOptions; timeout?: number } = NO_POLICY;
    if (decoded.retry !== undefined || decoded.timeout !== undefined) {
      policy = {};
      if (decoded.retry !== undefined) policy.retry = JSON.parse(decoded.retry);
      if (decoded.timeout !== undefined) policy.timeout = decoded.timeout;
    }
    const job = new Job({
      policy,
      entryId,
      id: decoded.id,
      task: decoded.task,
      data,
      attempt: decoded.attempt,
      deliveries,
      enqueuedAt: decoded.enq,
      consumer: this.name,
    }, this);
    this.held.set(entryId, job);
    this.#buffer.push(job);
    if (this.#cancels.size > 0 && this.#cancelledEarly(job)) {
      abort(job, new CancelledError(`Job ${job.id} was cancelled`));
    }
    return job;
  }

  /**
   * Dead-letters an entry that cannot run, and acks it. The log line names the entry, the
   * reason and the error, never the payload. With a trusted job id, the job's own record is
   * marked dead (a producer awaiting its result learns of it); otherwise a placeholder is.
   */
  #bury(entryId: string, deliveries: number, error: string, reason: DeadReason, id?: string): void {
    this.#burying++;
    const { logger } = this.#ctx;
    const text = trimText(error);
    logger.warn(
      `sluice: queue ${this.#ctx.name}: entry ${entryId} went to the dead letters (${reason}): ${text}`,
    );
    this.#ctx.client().sluiceSettle(
      settleArgs(this.#ctx, this.name, [
        { op: "dead", job: { entryId, deliveries, id }, error: text, reason },
      ]),
    ).catch((err) =>
      logger.error(`sluice: queue ${this.#ctx.name}: could not dead-letter ${entryId}`, err)
    ).finally(() => {
      this.#burying--;
      this.#wake();
    });
  }

  async #flushSettles(ops: SettleOp[]): Promise<number[]> {
    const { keys, group } = this.#ctx;
    const codes: number[] = [];
    for (let i = 0; i < ops.length; i += CHUNK) {
      const chunk = ops.slice(i, i + CHUNK);
      const args = settleArgs(this.#ctx, this.name, chunk);
      // The room these settles free is read right behind them, in the same write and round
      // trip, unless a promotion or a reclaim is due: those run in the read loop, which needs
      // room to get its turn.
      const now = Date.now();
      // Only acks free room for certain: a retry, release or dead-letter refused at maxmemory
      // (code 3) leaves its job held.
      // The adaptive rate counts every job that ran to an end (retried and failed ones too), so
      // a stream of failing fast jobs is fast work all the same.
      let freeing = 0, ended = 0;
      for (const { op } of chunk) {
        if (op === "ack" || op === "cancel") freeing++;
        if (op !== "release") ended++;
      }
      if (this.#adapt !== undefined) {
        this.#adapt.ended += ended;
        this.#measure(performance.now(), ADAPT_EVERY_MS);
      }
      this.#settling += freeing;
      const reads = this.#stopping || now >= this.#dueAt || now >= this.#nextReclaim
        ? 0
        : Math.max(0, this.#room() + this.#settling);
      const epoch = this.#listening ? this.#epoch : -1;
      const pipeline = this.#ctx.client().pipeline();
      (pipeline as unknown as ScriptClient).sluiceSettle(args);
      if (reads > 0) {
        pipeline.xreadgroup(
          "GROUP",
          group,
          this.name,
          "COUNT",
          reads,
          "STREAMS",
          keys.stream,
          ">",
        );
      }
      this.#requested += reads;
      let replies: [Error | null, unknown][];
      try {
        replies = (await pipeline.exec()) ?? [];
      } catch (err) {
        this.#requested -= reads;
        throw err;
      } finally {
        this.#settling -= freeing;
      }
      const [settleError, settled] = replies[0] ?? [new Error("no reply")];
      const [readError, read] = replies[1] ?? [null, null];
      const entries = readError
        ? []
        : (read as [string, [string, string[]][]][] | null)?.[0]?.[1] ?? [];
      this.#requested -= reads - entries.length;
      // What was read is ours whatever the settle did: admit it before reporting anything.
      if (entries.length > 0) await this.#admitRead(entries, epoch);
      if (settleError) throw settleError;
      codes.push(...(settled as number[]));
    }
    return codes;
  }

  /** Admits entries read along with settles, and hands them to the read loop. */
  async #admitRead(entries: [string, string[]][], epoch: number): Promise<void> {
    try {
      await this.#admitFresh(entries, epoch);
    } catch (err) {
      // Admitted jobs stay held; a failed cancel look is the only thing that can get here.
      this.#ctx.logger.error(`sluice: queue ${this.#ctx.name}: checking read jobs failed`, err);
    }
    if (this.#stopping) this.#releaseBuffer();
    // A blocking read may be waiting on an empty stream while these sit in the buffer.
    if (this.#buffer.length > 0) this.#interrupt();
    this.#wake();
  }

  /** One renewal per tick: every held job's lease and our heartbeat, in one script call. */
  async #renew(): Promise<void> {
    if (this.#renewing || this.#finished) return;
    this.#renewing = true;
    const { logger } = this.#ctx;
    // Jobs being settled are left out: their settle reports their fate.
    const jobs = [...this.held.values()].filter(isLeased);
    try {
      for (let i = 0; i === 0 || i < jobs.length; i += CHUNK) {
        const chunk = jobs.slice(i, i + CHUNK);
        const sent = new Map(chunk.map((job) => [job, job.deliveries]));
        const lost = await this.#ctx.client().sluiceRenew(
          renewArgs(this.#ctx, this.name, this.idleTimeout * 3, sent),
        );
        for (const entryId of lost) {
          const job = this.held.get(entryId);
          // Our own reclaim may have moved the delivery count on meanwhile: still ours.
          if (job === undefined || sent.get(job) !== job.deliveries) continue;
          const error = new LeaseLostError(
            `Lost the lease on job ${job.id} (${entryId}): another consumer owns it now`,
          );
          if (markLost(job, error)) {
            logger.warn(`sluice: queue ${this.#ctx.name}: ${error.message}`);
          }
        }
      }
    } catch (err) {
      logger.error(`sluice: queue ${this.#ctx.name}: lease renewal failed`, err);
    } finally {
      this.#renewing = false;
    }
  }

  async #recover(err: unknown): Promise<void> {
    if (this.#stopping) return;
    const message = toError(err).message;
    if (message.includes("NOGROUP")) {
      this.#ctx.logger.warn(
        `sluice: queue ${this.#ctx.name}: consumer group ${this.#ctx.group} is missing (Redis restarted without persistence, or the stream was deleted); recreating it`,
      );
      try {
        await this.#ctx.ensureGroup(true);
        return;
      } catch (again) {
        err = again;
      }
    }
    this.#failures++;
    const wait = Math.min(50 * 2 ** Math.min(this.#failures, 6), 2_000);
    if (this.#failures === 1 || this.#failures % 10 === 0) {
      this.#ctx.logger.error(
        `sluice: queue ${this.#ctx.name}: reading failed (${this.#failures} in a row), retrying in ${wait} ms`,
        err,
      );
    }
    this.#roomWaiter ??= Promise.withResolvers();
    await settlesWithin(this.#roomWaiter.promise, wait);
  }

  /** Hands a job the consumer cannot settle back to Redis's care: its lease will lapse. */
  abandon(job: Job, reason: Error): void {
    markLost(job, reason);
  }

  #tickMs(): number {
    return Math.max(1, Math.floor(this.idleTimeout / 3));
  }

  #stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#wake();
    void this.#unblock();
    if (!this.#pulling) this.#closeReadable();
    this.#releaseBuffer();
  }

  /** Prefetched jobs never handed out go back at once, with no attempt charged. */
  #releaseBuffer(): void {
    const unread = this.#buffer.splice(0);
    Promise.allSettled(unread.map((job) => job.release())).then(() => this.#maybeFinish());
  }

  #closeReadable(): void {
    try {
      this.#controller?.close();
    } catch {
      // already closed or errored
    }
    this.#controller = undefined;
  }

  /**
   * Cuts a blocking read short with CLIENT UNBLOCK, sent again until the read returns (it may
   * not have reached Redis yet), with a disconnect as the last resort.
   */
  async #unblock(): Promise<void> {
    const deadline = Date.now() + 1_000;
    for (let busy = this.#busy; busy !== undefined; busy = this.#busy) {
      if (this.#read !== undefined) {
        if (Date.now() > deadline || this.#blockingId === undefined) {
          this.#blocking.disconnect();
          return;
        }
        await this.#ctx.client().client("UNBLOCK", this.#blockingId).catch(() => {});
      }
      await settlesWithin(busy, 25);
    }
  }

  /** Finishes once stopped, nothing is held and no round trip is under way. */
  async #maybeFinish(): Promise<void> {
    if (this.#finished || !this.#stopping || this.held.size > 0 || this.#busy) return;
    await this.#finish(SHUTDOWN_WAIT_MS);
  }

  /**
   * Retires the consumer: gives back anything still pending under its name (a read reply cut
   * off by a disconnect, or jobs whose release failed), deletes the consumer and the heartbeat,
   * and closes the blocking connection. Waits at most `wait` ms for Redis.
   */
  async #finish(wait: number): Promise<void> {
    if (this.#finished) return await this.done;
    this.#finished = true;
    clearInterval(this.#tick);
    clearInterval(this.#adaptTick);
    this.#signal?.removeEventListener("abort", this.#onAbort);
    const abandoned = new LeaseLostError(`Consumer ${this.name} stopped`);
    for (const job of [...this.held.values()]) markLost(job, abandoned);
    const { logger } = this.#ctx;
    const retire = async () => {
      if (this.#busy) await this.#busy;
      await this.#settler.idle();
      const released = await retireConsumer(this.#ctx.client(), this.#ctx, this.name);
      if (released > 0) {
        logger.warn(`sluice: queue ${this.#ctx.name}: released ${released} unseen deliveries`);
      }
    };
    const retired = retire().catch((err) =>
      logger.error(`sluice: queue ${this.#ctx.name}: could not retire consumer ${this.name}`, err)
    );
    if (!await settlesWithin(retired, wait)) {
      logger.error(
        `sluice: queue ${this.#ctx.name}: Redis did not answer within ${wait} ms while stopping; jobs still pending under ${this.name} go to peers after idleTimeout`,
      );
    }
    await Promise.all([close(this.#blocking), close(this.#subscriber)]);
    this.#done.resolve();
  }
}

/** A job given no retry or timeout at enqueue: one shared, frozen policy. */
const NO_POLICY = Object.freeze({});

/** The id field of an entry that decoded (so the id is valid). */
function jobIdOf(fields: string[]): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === "id") return fields[i + 1];
  return undefined;
}

function consumerName(): string {
  const random = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36);
  return `${processName()}-${random}`;
}

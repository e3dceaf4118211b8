/**
 * The job stream: a consumer reads a queue's jobs into a bounded window and hands them out,
 * as a web `ReadableStream` (`queue.consume()`) or one at a time (`next()`, for a Worker).
 * This file wires the parts: window.ts counts room, read.ts reads, admit.ts turns entries into
 * jobs, settle.ts settles (with the next read behind each flush), lease.ts renews, reclaim.ts
 * claims what dead peers left, cancel.ts and delayed.ts listen, pause.ts says whether jobs may
 * start.
 *
 * @module
 */
import { hostname } from "./redis/connect.ts";
import { VERSION } from "./version.ts";
import { settlesWithin } from "./async.ts";
import type { QueueContext } from "./queue.ts";
import { LeaseLostError, ValidationError } from "./errors.ts";
import { Job } from "./job.ts";
import { processName } from "./redis/connect.ts";
import { checkInt, checkLimit, MAX_MS, show } from "./_options.ts";
import { internal } from "./_internal.ts";
import { ADAPT_CHECK_MS, type Resize, Window } from "./window.ts";
import { Admitter } from "./admit.ts";
import { Cancels } from "./cancel.ts";
import { Promoter } from "./delayed.ts";
import { type Gated, PauseGate } from "./pause.ts";
import { Leases } from "./lease.ts";
import { Floor, type LaneEntries, Reader } from "./read.ts";
import { laneViews } from "./priority.ts";
import { Reclaimer } from "./reclaim.ts";
import { Settler } from "./settle.ts";
import { retire } from "./scripts/retire.ts";
import { checkIdle } from "./durable.ts";

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

/** @internal What a consumer's parts share: plain fields, and a few calls back. */
export interface Holding {
  readonly ctx: QueueContext;
  /** The consumer name in the group. */
  readonly name: string;
  /** Every job read and not yet settled, handed out or not, by `job.key` (its entry id and
   * lane). */
  readonly held: Map<string, Job>;
  /** Where reads of several lanes (priorities) stand. */
  readonly floor: Floor;
  /** The queue as each lane's scripts see it (see `laneViews`), in lane order. */
  readonly views: readonly (QueueContext & { readonly pri?: string })[];
  /** Jobs read and not yet handed out, oldest first. */
  readonly buffer: Job[];
  readonly window: Window;
  readonly cancels: Cancels;
  /** True once stopped: nothing more is read. */
  readonly stopping: boolean;
  /** Room may have freed up: a loop waiting for it looks again. */
  wake(): void;
  /** Cuts a blocking read short. */
  interrupt(): void;
  /** A job was settled or lost: it takes no room now. */
  forget(job: Job): void;
  /** The heartbeat record: JSON of who this consumer is and what it holds. */
  record(): string;
  /** May a settle read right behind it now? Not while a promotion or a reclaim is due. */
  readsBehindSettles(now: number): boolean;
  /** Entries read behind a settle: admit them and hand them to the loop. */
  admitRead(entries: LaneEntries, mark: number): Promise<void>;
  /** The adaptive window changed size. */
  resized(resize: Resize): void;
}

/** How long a shutdown waits on Redis before it gives up and lets leases lapse. */
const SHUTDOWN_WAIT_MS = 5_000;

/** @internal Consume options, checked, with their defaults. */
export type ConsumeSettings = Required<Omit<ConsumeOptions, "signal">>;

/**
 * @internal Checks consume options up front and fills in their defaults (a Worker checks its
 * own with this too, before anything runs).
 * @throws {RangeError} If prefetch, idleTimeout or maxDeliveries is out of range.
 * @throws {TypeError} If the consumer name is not 1 to 200 characters.
 */
export function consumeSettings(action: string, options: ConsumeOptions): ConsumeSettings {
  const {
    prefetch = 16,
    idleTimeout = 30_000,
    maxDeliveries = 5,
    consumer = consumerName(),
  } = options;
  checkInt(action, "prefetch", prefetch, 1, 100_000);
  checkInt(action, "idleTimeout", idleTimeout, 100, MAX_MS);
  checkLimit(action, "maxDeliveries", maxDeliveries, 1);
  if (typeof consumer !== "string" || consumer.length === 0 || consumer.length > 200) {
    throw new TypeError(
      `${action}: consumer must be a name of 1 to 200 characters, got ${show(consumer)}`,
    );
  }
  return { prefetch, idleTimeout, maxDeliveries, consumer };
}

/**
 * @internal The machinery behind `queue.consume()`; a `Worker` pulls from it with `next()`.
 */
export class Consumer implements Holding, Gated {
  readonly ctx: QueueContext;
  readonly name: string;
  readonly readable: ReadableStream<Job>;
  readonly held = new Map<string, Job>();
  readonly buffer: Job[] = [];
  readonly floor: Floor;
  readonly views: readonly (QueueContext & { readonly pri?: string })[];
  readonly window: Window;
  readonly cancels: Cancels;
  stopping = false;
  /** Why the consumer stopped on its own, if it did (a priority list other than Redis's). */
  failure: Error | undefined;
  #reader: Reader;
  #settler: Settler;
  #admitter: Admitter;
  #leases: Leases;
  #reclaimer: Reclaimer;
  #promoter: Promoter;
  #gate: PauseGate;
  #adaptTick: ReturnType<typeof setInterval> | undefined;
  #signal: AbortSignal | undefined;
  /** One loop round talking to Redis (group check, promotion, reclaim, read), while under way. */
  #busy: Promise<void> | undefined;
  #controller: ReadableStreamDefaultController<Job> | undefined;
  #pulling = false;
  #finished = false;
  #done = Promise.withResolvers<void>();
  #roomWaiter: PromiseWithResolvers<void> | undefined;
  /** Jobs given back whose release is under way: still held, but not running. */
  #givingBack = 0;
  #unsubscribe: Promise<(() => Promise<void>)[]>;
  readonly #startedAt = Date.now();
  /** More of the heartbeat record, from the Worker that runs this consumer. */
  describe: (() => Record<string, unknown>) | undefined;

  /** @throws {RangeError | TypeError} If an option is invalid (see `consumeSettings`). */
  constructor(ctx: QueueContext, options: ConsumeOptions = {}) {
    const { signal } = options;
    const action = `Cannot consume ${ctx.name}`;
    const { prefetch, idleTimeout, maxDeliveries, consumer } = consumeSettings(action, options);
    checkIdle(action, ctx.durability, idleTimeout);
    // Every record this consumer logs names it.
    this.ctx = { ...ctx, logger: ctx.logger.child({ worker_id: consumer }) };
    this.name = consumer;
    this.floor = new Floor(ctx.lanes.streams);
    this.views = laneViews(ctx);
    this.window = new Window(prefetch);
    this.cancels = new Cancels(this);
    this.#settler = new Settler(this);
    this.#admitter = new Admitter(this, this.#settler, this.cancels);
    this.#reader = new Reader(this);
    this.#promoter = new Promoter(this, Math.max(1, Math.floor(idleTimeout / 3)));
    const admitter = this.#admitter;
    this.#reclaimer = new Reclaimer(this, admitter, this.cancels, idleTimeout, maxDeliveries);
    this.#gate = new PauseGate(this);
    // A wake-up missed while (re)subscribing costs at most one tick: the loop also looks at the
    // delayed set once a tick, and at once when the subscriber is back.
    // A failed subscribe is seen as not listening; the other one is still undone at the end.
    this.#unsubscribe = Promise.allSettled([
      ctx.pubsub.subscribe(ctx.keys.wake, (message) => this.#promoter.heard(message)),
      ctx.pubsub.subscribe(ctx.keys.cancel, (message) => {
        if (message !== null) this.cancels.heard(message);
      }),
      ctx.pubsub.subscribe(ctx.keys.pause, (message) => this.#gate.heard(message)),
    ]).then((subs) => subs.flatMap((sub) => sub.status === "fulfilled" ? [sub.value] : []));
    // Nothing is read or started until the paused flag is read: subscribed first, so that a
    // pause in between is heard or found.
    void this.#unsubscribe.then(() => this.#gate.look());
    this.#leases = new Leases(this, idleTimeout);
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
        this.stop();
      },
    }, { highWaterMark: 0 });
    if (signal?.aborted) this.stop();
    signal?.addEventListener("abort", this.#onAbort, { once: true });
    this.#signal = signal;
  }

  /**
   * Lets the window follow the work (see `Window.adapt`). Settles measure the rate as they go;
   * when they stop coming (every slot busy with slow jobs), a timer notices within
   * ADAPT_CHECK_MS. One timer per consumer, none per job.
   */
  adapt(base: number, min: number, max: number): void {
    this.window.adapt(base, min, max, performance.now());
    this.#settler.resized(this.window.limit);
    this.wake();
    this.#adaptTick ??= setInterval(() => {
      const resize = this.window.ended(0, performance.now(), ADAPT_CHECK_MS);
      if (resize !== undefined) this.resized(resize);
    }, ADAPT_CHECK_MS);
  }

  resized(resize: Resize): void {
    if (resize.changed) {
      this.#settler.resized(resize.limit);
      this.wake();
    }
    // While paused, held jobs stay held (leases renewed) for the resume: no peer would run them.
    if (this.stopping || this.#gate.blocked) return;
    // Prefetched jobs that would wait too long go back for idle peers. The newest are given
    // back; the oldest stay first in line.
    const { buffer } = this;
    const keep = this.window.keep(buffer.length, this.held.size - this.#givingBack, resize.rate);
    if (keep >= buffer.length) return;
    for (const job of buffer.splice(keep)) {
      this.#givingBack++;
      job.release().catch((err) =>
        this.abandon(job, new LeaseLostError(`Could not give back job ${job.id}`, { cause: err }))
      ).finally(() => this.#givingBack--);
    }
  }

  /**
   * @internal The next job to run: at once from the prefetch buffer when it has one, else once
   * read. Undefined once the consumer stops.
   */
  next(): Job | Promise<Job | undefined> {
    if (!this.stopping && !this.#gate.blocked) {
      for (let job = this.buffer.shift(); job !== undefined; job = this.buffer.shift()) {
        if (!job.settled) return job;
      }
    }
    return this.#next();
  }

  /** Resolves when the stream has ended, every held job is settled, and the consumer retired. */
  get done(): Promise<void> {
    return this.#done.promise;
  }

  /** Stops reading: no read is sent after this, and a blocking read is cut short. */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.wake();
    void this.#reader.unblock(() => this.#busy);
    if (!this.#pulling) this.#closeReadable();
    this.#releaseBuffer();
  }

  /**
   * Releases every held job, then retires. If Redis does not answer within `wait` ms, it gives
   * up on the rest: their leases lapse and peers reclaim them after idleTimeout.
   */
  async shutdown(wait: number = SHUTDOWN_WAIT_MS): Promise<void> {
    this.stop();
    const releases = [...this.held.values()].map((job) => job.release());
    await settlesWithin(Promise.allSettled(releases), wait);
    await this.#finish(wait);
  }

  /** Hands a job the consumer cannot settle back to Redis's care: its lease will lapse. */
  abandon(job: Job, reason: Error): void {
    Job[internal].lose(job, reason);
  }

  /** The heartbeat record (see `queue.workers()`): who this consumer is and what it holds. */
  record(): string {
    return JSON.stringify({
      id: this.name,
      host: hostname(),
      pid: Deno.pid,
      version: VERSION,
      startedAt: this.#startedAt,
      held: this.held.size,
      heartbeatAt: Date.now(),
      ...this.describe?.(),
    });
  }

  forget(job: Job): void {
    // Only this very job: after a self-reclaim the entry id may be held by the same Job again.
    if (this.held.get(job.key) !== job) return;
    this.held.delete(job.key);
    this.wake();
    if (this.held.size === 0 && this.stopping) void this.#maybeFinish();
  }

  wake(): void {
    this.#roomWaiter?.resolve();
    this.#roomWaiter = undefined;
  }

  interrupt(): void {
    this.#reader.interrupt();
    // A paused loop sleeps until the next promotion: a wake-up may have moved it closer.
    if (this.#gate.blocked) this.wake();
  }

  gateChanged(): void {
    this.#reader.interrupt();
    this.wake();
  }

  readsBehindSettles(now: number): boolean {
    return !this.stopping && !this.#gate.blocked && now < this.#promoter.dueAt &&
      now < this.#reclaimer.next;
  }

  async admitRead(entries: LaneEntries, mark: number): Promise<void> {
    try {
      await this.#admitter.fresh(entries, mark);
    } catch (err) {
      // Admitted jobs stay held; a failed cancel look is the only thing that can get here.
      this.ctx.logger.error(`sluice: queue ${this.ctx.name}: checking read jobs failed`, err);
    }
    if (this.stopping) this.#releaseBuffer();
    // A blocking read may be waiting on an empty stream while these sit in the buffer.
    if (this.buffer.length > 0) this.interrupt();
    this.wake();
  }

  #onAbort = (): void => this.stop();

  #roomFreed(): Promise<void> {
    this.#roomWaiter ??= Promise.withResolvers();
    return this.#roomWaiter.promise;
  }

  async #next(): Promise<Job | undefined> {
    while (true) {
      if (this.stopping) {
        this.#releaseBuffer();
        return undefined;
      }
      if (this.#gate.blocked) {
        await this.#whilePaused();
        continue;
      }
      const job = this.buffer.shift();
      if (job !== undefined) {
        if (!job.settled) return job;
        continue;
      }
      if (this.window.room(this.held.size) <= 0) {
        await this.#roomFreed();
        continue;
      }
      this.#busy = this.#round();
      await this.#busy;
      this.#busy = undefined;
    }
  }

  /** One round: make sure the group exists, promote and reclaim if due, else read. Never throws. */
  async #round(): Promise<void> {
    try {
      await this.#reader.ensureGroup();
      if (!this.stopping && Date.now() >= this.#promoter.dueAt) await this.#promoter.run();
      // Paused meanwhile: nothing more is claimed or read (see #whilePaused).
      if (this.#gate.blocked) return;
      if (!this.stopping && Date.now() >= this.#reclaimer.next) await this.#reclaimer.run();
      if (
        this.buffer.length === 0 && !this.stopping && !this.#gate.blocked &&
        this.window.room(this.held.size) > 0
      ) {
        if (this.window.readRoom(this.held.size) > 0) {
          const mark = this.cancels.mark();
          const wakeAt = Math.min(this.#reclaimer.next, this.#promoter.dueAt);
          const entries = await this.#reader.read(wakeAt, this.#promoter.dueAt);
          await this.#admitter.fresh(entries, mark);
        } else {
          // The rest of the window is filled by the reads behind settles, as they land.
          await this.#roomFreed();
        }
      }
      this.#reader.succeeded();
    } catch (err) {
      // A priority list other than Redis's: no read can ever be right. The stream ends with it.
      if (err instanceof ValidationError) return this.#fail(err);
      await this.#reader.recover(err, this.#roomFreed());
    }
  }

  /** Ends the stream with `err` (read by the next `for await` step), and stops. */
  #fail(err: Error): void {
    this.failure = err;
    try {
      this.#controller?.error(err);
    } catch {
      // already closed
    }
    this.#controller = undefined;
    this.stop();
  }

  /**
   * While the queue is paused: nothing is read, claimed or handed out, but delayed jobs still go
   * to the stream when due. Held jobs stay held, their leases renewed. Returns when a promotion
   * may be due or something changed (a resume, a stop, a wake-up).
   */
  async #whilePaused(): Promise<void> {
    const wait = this.#promoter.dueAt - Date.now();
    if (wait > 0) {
      await settlesWithin(this.#roomFreed(), wait);
      return;
    }
    // A round promotes what is due, then stops short of claiming or reading while paused.
    this.#busy = this.#round();
    await this.#busy;
    this.#busy = undefined;
  }

  /** Prefetched jobs never handed out go back at once, with no attempt charged. */
  #releaseBuffer(): void {
    const unread = this.buffer.splice(0);
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

  /** Finishes once stopped, nothing is held and no round trip is under way. */
  async #maybeFinish(): Promise<void> {
    if (this.#finished || !this.stopping || this.held.size > 0 || this.#busy) return;
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
    this.#leases.stop();
    this.#gate.stop();
    clearInterval(this.#adaptTick);
    this.#signal?.removeEventListener("abort", this.#onAbort);
    const abandoned = new LeaseLostError(`Consumer ${this.name} stopped`);
    for (const job of [...this.held.values()]) Job[internal].lose(job, abandoned);
    const { logger, client } = this.ctx;
    const retirement = async () => {
      if (this.#busy) await this.#busy;
      await this.#settler.idle();
      await this.#settler.closeEvents();
      let released = 0;
      for (const view of this.views) released += await retire(client, view, this.name);
      if (released > 0) {
        logger.warn(`sluice: queue ${this.ctx.name}: released ${released} unseen deliveries`);
      }
    };
    const retired = retirement().catch((err) =>
      logger.error(`sluice: queue ${this.ctx.name}: could not retire consumer ${this.name}`, err)
    );
    if (!await settlesWithin(retired, wait)) {
      logger.error(
        `sluice: queue ${this.ctx.name}: Redis did not answer within ${wait} ms while stopping; jobs still pending under ${this.name} go to peers after idleTimeout`,
      );
    }
    // Settles still waiting for their replicas (durable mode) give up now.
    this.#settler.close();
    const unsubscribe = await settlesWithin(
      this.#unsubscribe.then((stops) => Promise.all(stops.map((stop) => stop()))),
      1_000,
    );
    if (!unsubscribe) logger.warn(`sluice: queue ${this.ctx.name}: could not unsubscribe`);
    await this.#reader.close();
    this.#done.resolve();
  }
}

function consumerName(): string {
  const random = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36);
  return `${processName()}-${random}`;
}

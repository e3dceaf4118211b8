/**
 * Settling: acks, retries, releases and dead-letters of one consumer go to Redis in batches,
 * one script call per flush, with the read of the room it frees pipelined right behind it in
 * the same round trip. In durable mode a WAIT follows in that round trip too, and a flush is
 * reported only once replicated.
 *
 * @module
 */
import { progressArgs } from "./scripts/progress.ts";
import type { Holding } from "./consume.ts";
import { Batcher } from "./_batch.ts";
import type { Job, Lessor } from "./job.ts";
import type { ScriptClient } from "./scripts/mod.ts";
import { settleArgs, type SettleOp } from "./scripts/settle.ts";
import { type Durability, shortfall } from "./durable.ts";
import { DurabilityError, toError } from "./errors.ts";
import { retryWait } from "./backoff.ts";
import { delay } from "./async.ts";
import type { ScriptQueue } from "./scripts/_prelude.ts";
import type { LaneEntries } from "./read.ts";
import { Starts } from "./events.ts";

/** Operations split by the lane (priority stream) of their jobs, in order within each. */
function byLane(ops: SettleOp[]): SettleOp[][] {
  const lanes = new Map<number, SettleOp[]>();
  for (const op of ops) {
    const lane = op.job.lane ?? 0;
    const list = lanes.get(lane);
    if (list === undefined) lanes.set(lane, [op]);
    else list.push(op);
  }
  return [...lanes.values()];
}

/** Most deliveries per settle script call; bigger batches are split. */
const CHUNK = 1_000;

/** One consumer's settler: the lessor of every job it holds. */
export class Settler implements Lessor {
  #c: Holding;
  #batcher: Batcher<SettleOp, number>;
  /** Durable mode: flushes waiting for their replicas now; the first one logs. */
  #unreplicated = 0;
  /** Aborts when the consumer is done: flushes still waiting for replicas give up. */
  #closed = new AbortController();

  /** The `active` events of jobs started since the last settle, if events are on. */
  #starts: Starts | undefined;

  constructor(c: Holding) {
    this.#c = c;
    const { ctx } = c;
    if (ctx.events > 0) this.#starts = new Starts(ctx.client, ctx.keys.events, ctx.events);
    // Two settle calls may be under way, each with at most half the window: Redis settles
    // one half while this process runs the other. A batch waits for jobs being handed out.
    this.#batcher = new Batcher(
      (ops) => this.#flush(ops),
      2,
      Math.max(1, Math.ceil(c.window.limit / 2)),
      () => c.buffer.length,
    );
  }

  /** The window changed size: so does the most a batch holds. */
  resized(limit: number): void {
    this.#batcher.most = Math.max(1, Math.ceil(limit / 2));
  }

  get consumer(): string {
    return this.#c.name;
  }

  async progress(id: string, json: string): Promise<number> {
    const { ctx } = this.#c;
    const args = progressArgs(ctx.keys, id, json, ctx.events);
    const pipeline = ctx.client.pipeline();
    // Starts not yet written go first: a job's active event precedes its progress.
    if (!this.#starts?.queue(pipeline)) return await ctx.client.sluiceProgress(args);
    (pipeline as unknown as ScriptClient).sluiceProgress(args);
    const replies = await pipeline.exec();
    const [err, stored] = replies?.[1] ?? [new Error("no reply")];
    if (err) throw err;
    return stored as number;
  }

  started(job: Job): void {
    this.#starts?.started(job.id, job.task, job.attempt, this.#c.name);
  }

  settle(op: SettleOp): Promise<number> {
    return this.#batcher.push(op);
  }

  forget(job: Job): void {
    this.#c.forget(job);
  }

  /** Resolves once no settle is waiting or under way. */
  idle(): Promise<void> {
    return this.#batcher.idle();
  }

  /** The consumer is done: flushes still waiting for their replicas fail now. */
  close(): void {
    this.#closed.abort();
  }

  /** Writes the `active` events still buffered, and waits for them: no timer is left. */
  async closeEvents(): Promise<void> {
    await this.#starts?.close();
  }

  async #flush(ops: SettleOp[]): Promise<number[]> {
    const codes: number[] = [];
    for (let i = 0; i < ops.length; i += CHUNK) {
      const chunk = ops.length <= CHUNK ? ops : ops.slice(i, i + CHUNK);
      for (const code of await this.#send(chunk)) codes.push(code);
    }
    return codes;
  }

  /** One settle call, and the read behind it, in one round trip. */
  async #send(chunk: SettleOp[]): Promise<number[]> {
    const c = this.#c;
    const { window, ctx } = c;
    // Only acks free room for certain: a retry, release or dead-letter refused at maxmemory
    // (code 3) leaves its job held. Every job that ran to an end counts for the adaptive rate.
    let freeing = 0, ended = 0;
    for (const { op } of chunk) {
      if (op === "ack" || op === "cancel") freeing++;
      if (op !== "release") ended++;
    }
    if (window.adaptive) {
      const resize = window.ended(ended, performance.now());
      if (resize !== undefined) c.resized(resize);
    }
    // The room these settles free is read right behind them, unless a promotion or a reclaim
    // is due: those run in the read loop, which needs room to get its turn.
    window.settling += freeing;
    const reads = c.readsBehindSettles(Date.now()) ? window.settleRoom(c.held.size) : 0;
    const mark = c.cancels.mark();
    const pipeline = ctx.client.pipeline();
    // The starts since the last settle go first, so each job's active event precedes its end.
    const first = this.#starts?.queue(pipeline) ? 1 : 0;
    // One SETTLE per priority stream among the operations (one stream without priorities).
    const lanes = c.floor.single ? [chunk] : byLane(chunk);
    for (const ops of lanes) {
      const view = c.views[ops[0]!.job.lane ?? 0]!;
      (pipeline as unknown as ScriptClient).sluiceSettle(settleArgs(view, c.name, ops));
    }
    // One XREADGROUP without priorities; with them, the floor's read and its probes.
    const readCalls = reads > 0
      ? c.floor.queue(pipeline, ctx.lanes.streams, ctx.group, c.name, reads)
      : 0;
    const durable = ctx.durability;
    if (durable !== undefined) pipeline.wait(durable.replicas, durable.timeout);
    window.reserve(reads);
    let replies: [Error | null, unknown][];
    try {
      replies = (await pipeline.exec()) ?? [];
    } catch (err) {
      window.free(reads);
      throw err;
    } finally {
      window.settling -= freeing;
    }
    if (first > 0) replies = replies.slice(first);
    const calls = lanes.length;
    // A read that failed brings nothing: the loop's next read meets the failure.
    const entries: LaneEntries = readCalls === 0
      ? []
      : c.floor.learn(replies.slice(calls, calls + readCalls), reads).entries;
    let got = 0;
    for (const [, read] of entries) got += read.length;
    window.free(reads - got);
    // What was read is ours whatever the settle did: admit it before reporting anything.
    if (got > 0) await c.admitRead(entries, mark);
    const codes = lanes.length === 1 ? [] : new Array<number>(chunk.length);
    const at = lanes.length === 1 ? undefined : new Map(chunk.map((op, i) => [op, i]));
    for (let l = 0; l < lanes.length; l++) {
      const [settleError, settled] = replies[l] ?? [new Error("no reply")];
      if (settleError) throw settleError;
      const ops = lanes[l]!, laneCodes = settled as number[];
      if (durable !== undefined) {
        const wait = replies[calls + readCalls];
        const acked = shortfall(wait, durable);
        if (acked !== undefined) {
          const view = c.views[ops[0]!.job.lane ?? 0]!;
          await this.#confirm(view, ops, laneCodes, durable, acked, wait?.[0]);
        }
      }
      if (lanes.length === 1) return laneCodes;
      for (let i = 0; i < ops.length; i++) codes[at!.get(ops[i]!)!] = laneCodes[i]!;
    }
    return codes;
  }

  /**
   * Durable mode: a settle Redis ran, whose WAIT fell short (or failed). Nothing of it is
   * reported until it is replicated: the operations it carried out are sent again, with a WAIT,
   * until enough replicas acknowledge, or the consumer is done.
   *
   * Sending a settle again is safe: SETTLE is fenced by the delivery's pending entry, so an
   * operation that was carried out finds no entry (an acked delivery leaves the pending list
   * for good) and changes nothing, reporting 0. An XPENDING of each delivery, in the same
   * round trip just before the settle, tells that case (not pending: still done) from a peer
   * holding the delivery now (our write was lost in a failover, and the job was reclaimed:
   * the lease is lost). A delivery still pending under this consumer means the write was lost;
   * the settle carries it out again. A settle that writes nothing gives WAIT nothing new to
   * wait for (on a new connection, nothing at all), so a marker write goes between them.
   *
   * @param codes The first call's codes; updated in place with what the resends found.
   */
  async #confirm(
    view: ScriptQueue,
    chunk: SettleOp[],
    codes: number[],
    durable: Durability,
    acked: number,
    error: Error | null | undefined,
  ): Promise<void> {
    const { ctx, name } = this.#c;
    // A lost lease (0) or a refusal for memory (3) changed nothing: only the rest is waited on.
    let todo: number[] = [];
    for (let i = 0; i < codes.length; i++) if (codes[i] === 1 || codes[i] === 2) todo.push(i);
    if (todo.length === 0) return;
    const closed = this.#closed.signal;
    if (this.#unreplicated++ === 0) {
      const failed = error ? ` (WAIT failed: ${error.message})` : "";
      ctx.logger.warn(
        `sluice: queue ${ctx.name}: consumer ${name}: settles are not replicated: ${acked} of ${durable.replicas} replicas acknowledged within ${durable.timeout} ms${failed}; their jobs are not reported done, and the settles are sent again until replicated`,
      );
    }
    const started = Date.now();
    let confirmed = false;
    try {
      for (let attempt = 1;; attempt++) {
        await delay(retryWait(50, attempt, 1_000), { signal: closed }).catch(() => {});
        if (closed.aborted) {
          const ids = todo.map((i) => chunk[i]!.job.id ?? chunk[i]!.job.entryId);
          throw new DurabilityError(
            `Cannot settle ${ids.length} jobs on queue ${ctx.name}: consumer ${name} stopped before ${durable.replicas} replicas acknowledged the settle (${acked} did within ${durable.timeout} ms); it may or may not stand`,
            { acknowledged: acked, required: durable.replicas, ids },
          );
        }
        const ops = todo.map((i) => chunk[i]!);
        const pipeline = ctx.client.pipeline();
        for (const { job } of ops) {
          pipeline.xpending(view.keys.stream, ctx.group, job.entryId, job.entryId, 1);
        }
        (pipeline as unknown as ScriptClient).sluiceSettle(settleArgs(view, name, ops));
        pipeline.set(ctx.keys.sync, name, "PX", 60_000);
        pipeline.wait(durable.replicas, durable.timeout);
        let replies: [Error | null, unknown][];
        try {
          replies = (await pipeline.exec()) ?? [];
        } catch (err) {
          error = toError(err);
          continue;
        }
        const [settleError, again] = replies[ops.length] ?? [new Error("no reply")];
        if (settleError) {
          error = settleError;
          continue;
        }
        const left: number[] = [];
        for (let j = 0; j < ops.length; j++) {
          const i = todo[j]!;
          const code = (again as number[])[j];
          const [pendingError, pending] = replies[j] ?? [new Error("no reply")];
          if (code !== 0) {
            // Carried out again (the first write was lost), or refused for memory now (3:
            // the job stays held, and its owner tries again).
            codes[i] = code!;
            if (code !== 3) left.push(i);
          } else if (pendingError) {
            left.push(i); // cannot tell yet: ask again
          } else if ((pending as unknown[]).length === 0) {
            left.push(i); // not pending: the first write stands
          } else {
            codes[i] = 0; // a peer holds the delivery now
          }
        }
        todo = left;
        const wait = replies[ops.length + 2];
        const short = shortfall(wait, durable);
        if (short === undefined) {
          confirmed = true;
          return;
        }
        if (todo.length === 0) return; // every one of them was lost: nothing of ours to wait for
        acked = short;
        error = wait?.[0];
      }
    } finally {
      if (--this.#unreplicated === 0 && confirmed) {
        ctx.logger.warn(
          `sluice: queue ${ctx.name}: consumer ${name}: settles are replicated again (after ${
            Date.now() - started
          } ms)`,
        );
      }
    }
  }
}

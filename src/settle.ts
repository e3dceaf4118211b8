/**
 * Settling: acks, retries, releases and dead-letters of one consumer go to Redis in batches,
 * one script call per flush, with the read of the room it frees pipelined right behind it in
 * the same round trip.
 *
 * @module
 */
import type { Holding } from "./consume.ts";
import { Batcher } from "./_batch.ts";
import type { Job, Lessor } from "./job.ts";
import type { ReadEntry } from "./admit.ts";
import type { ScriptClient } from "./scripts/mod.ts";
import { settleArgs, type SettleOp } from "./scripts/settle.ts";

/** Most deliveries per settle script call; bigger batches are split. */
const CHUNK = 1_000;

/** One consumer's settler: the lessor of every job it holds. */
export class Settler implements Lessor {
  #c: Holding;
  #batcher: Batcher<SettleOp, number>;

  constructor(c: Holding) {
    this.#c = c;
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
    (pipeline as unknown as ScriptClient).sluiceSettle(settleArgs(ctx, c.name, chunk));
    if (reads > 0) {
      pipeline.xreadgroup(
        "GROUP",
        ctx.group,
        c.name,
        "COUNT",
        reads,
        "STREAMS",
        ctx.keys.stream,
        ">",
      );
    }
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
    const [settleError, settled] = replies[0] ?? [new Error("no reply")];
    const [readError, read] = replies[1] ?? [null, null];
    const entries = readError ? [] : (read as [string, ReadEntry[]][] | null)?.[0]?.[1] ?? [];
    window.free(reads - entries.length);
    // What was read is ours whatever the settle did: admit it before reporting anything.
    if (entries.length > 0) await c.admitRead(entries, mark);
    if (settleError) throw settleError;
    return settled as number[];
  }
}

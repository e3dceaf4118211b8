// deno-lint-ignore-file no-console
/**
 * What durable mode costs: `deno run -A bench/durable.ts [jobs]` (100,000 by default), and the
 * durable rows of `deno task bench`.
 *
 * A throwaway master and one replica on loopback. Each round, with durability off and then on
 * (`{ replicas: 1, timeout: 1000 }`), on a fresh queue: 2,000 single `enqueue()` calls one after
 * the other (latency), `enqueueMany` of `jobs` no-op jobs in calls of 10,000 (jobs/s), then a
 * Worker at concurrency 32 with `keepResult: 0` drains them (jobs/s). One untimed round of each
 * first, three timed ones after, alternating; the medians are printed last. The replica runs on
 * the same machine and competes for its cores: read the ratios.
 */
import { Redis } from "ioredis";
import { type Durability, Queue, task, Worker } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { QUICK_SYNC } from "../src/testing/_process.ts";

const CALL = 10_000;
const SINGLE = 2_000;

/** One mode's figures: enqueue() latency (µs), enqueueMany and processing rates (jobs/s). */
export interface DurableFigures {
  single: number;
  enqueued: number;
  processed: number;
}

/**
 * Runs the rounds on a throwaway master and replica and returns the medians with durability
 * off and on; `report` gets each round's line.
 */
export async function measureDurability(
  jobs: number,
  report: (line: string) => void = () => {},
): Promise<{ off: DurableFigures; on: DurableFigures }> {
  await using master = await startRedis({ args: QUICK_SYNC });
  await using _replica = await startRedis({
    args: ["--replicaof", "127.0.0.1", String(master.port)],
  });
  const db = new Redis(master.url);
  try {
    // In sync, and streaming: a replica gets writes only from its first ACK after a full sync.
    await db.set("bench", "1");
    if (await db.wait(1, 10_000) !== 1) throw new Error("the replica does not acknowledge writes");
    const noop = task("noop", () => {});
    const logger = { warn: console.warn, error: console.error };
    let round = 0;

    const run = async (durability: Durability | undefined): Promise<DurableFigures> => {
      const name = `q${round++}`;
      const options = { redis: master.url, logger, ...(durability ? { durability } : {}) };
      const queue = new Queue(name, options);
      let start = performance.now();
      for (let i = 0; i < SINGLE; i++) await queue.enqueue(noop, null);
      const single = (performance.now() - start) * 1000 / SINGLE;
      const items = Array.from({ length: CALL }, () => ({ data: null }));
      start = performance.now();
      for (let i = 0; i < jobs; i += CALL) await queue.enqueueMany(noop, items);
      const enqueued = jobs / ((performance.now() - start) / 1000);
      const worker = new Worker(name, [noop], {
        ...options,
        concurrency: 32,
        keepResult: 0,
        handleSignals: false,
      });
      let done = 0;
      worker.addEventListener("completed", () => {
        if (++done === jobs + SINGLE) worker.stop();
      });
      start = performance.now();
      await worker.run();
      const processed = (jobs + SINGLE) / ((performance.now() - start) / 1000);
      await queue.close();
      await db.flushall();
      return { single, enqueued, processed };
    };

    const modes = [["off", undefined], ["on", { replicas: 1, timeout: 1_000 }]] as const;
    for (const [, durability] of modes) await run(durability); // warm-up
    const seen = { off: [] as DurableFigures[], on: [] as DurableFigures[] };
    for (let r = 0; r < 3; r++) {
      for (const [label, durability] of modes) {
        const result = await run(durability);
        seen[label].push(result);
        report(`${label} ${show(result)}`);
      }
    }
    const median = (results: DurableFigures[]): DurableFigures => {
      const mid = (key: keyof DurableFigures) =>
        results.map((x) => x[key]).sort((a, b) => a - b)[Math.floor(results.length / 2)]!;
      return { single: mid("single"), enqueued: mid("enqueued"), processed: mid("processed") };
    };
    return { off: median(seen.off), on: median(seen.on) };
  } finally {
    db.disconnect();
  }
}

/** One line of figures. */
export function show(x: DurableFigures): string {
  return `enqueue() ${x.single.toFixed(0)} µs each, enqueueMany ${
    (x.enqueued / 1000).toFixed(1)
  }k jobs/s, processing at c=32 ${(x.processed / 1000).toFixed(1)}k jobs/s`;
}

if (import.meta.main) {
  const { off, on } = await measureDurability(Number(Deno.args[0] ?? 100_000), console.log);
  console.log(`median, durability off: ${show(off)}`);
  console.log(`median, durability on: ${show(on)}`);
}

/**
 * Job progress: ctx.progress stores the last value in the job's record for info() in any
 * process, fires the Worker's progress event, coalesces writes to one per 100 ms, never writes
 * a record for an ended job, and checks its input.
 */
import assert from "node:assert/strict";
import { Queue, task, type TaskContext, Worker } from "../mod.ts";
import { startCluster, startRedis } from "../src/testing.ts";
import { inspect, waitForRedis, WorkerProcess } from "./_helpers.ts";

const quiet = { warn() {}, error() {} };

Deno.test("ctx.progress: the last value lands in the record, writes coalesce, every call is an event", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  await db.config("SET", "notify-keyspace-events", "Kh");
  // Every write of the job's record, as Redis announces it.
  await using sub = inspect(redis.url);
  const writes: string[] = [];
  sub.on("message", (_channel: string, message: string) => writes.push(message));
  const gate = Promise.withResolvers<void>();
  const seen: { writes?: number; progress?: unknown } = {};
  const work = task("work", async (_: null, ctx: TaskContext) => {
    const before = writes.length;
    // 50 calls in a burst: the first writes at once, the rest coalesce into one write later.
    const calls = [];
    for (let i = 1; i <= 50; i++) calls.push(ctx.progress(i));
    await Promise.all(calls);
    await sub.ping(); // every notification sent before it has arrived
    seen.writes = writes.length - before;
    seen.progress = (await queue.job(ctx.job.id).info())?.progress;
    await ctx.progress({ stage: "upload", files: [1, 2] });
    await gate.promise;
    return "done";
  });
  const handle = await queue.enqueue(work, null);
  await sub.subscribe(`__keyspace@0__:${queue.keys.job(handle.id)}`);
  const events: unknown[] = [];
  const worker = new Worker("q", [work], { redis: redis.url, handleSignals: false, logger: quiet });
  worker.addEventListener("progress", (e) => events.push(e.detail.progress));
  worker.addEventListener("completed", () => worker.stop());
  const run = worker.run();
  // Seen from outside while it runs.
  const info = await waitForRedis(async () => {
    const i = await handle.info();
    return (i?.progress as { stage?: string } | undefined)?.stage === "upload" ? i : undefined;
  }, "the object progress stored");
  assert.equal(info.state, "active");
  assert.deepEqual(info.progress, { stage: "upload", files: [1, 2] });
  gate.resolve();
  await run;
  // 50 calls, 2 writes: one at once, one coalesced.
  assert.equal(seen.writes, 2);
  assert.equal(seen.progress, 50, "the last of the burst landed");
  assert.equal(events.length, 51);
  assert.equal(events[49], 50);
  // The finished record keeps the last progress.
  const done = await handle.info();
  assert.equal(done?.state, "completed");
  assert.deepEqual(done?.progress, { stage: "upload", files: [1, 2] });
});

Deno.test("a progress write still due when the handler returns lands before the ack, and never makes a record", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const work = task("work", (_: null, ctx: TaskContext) => {
    void ctx.progress(10);
    void ctx.progress(20); // due 100 ms later: sent when the handler returns, before the ack
  });
  // Records kept: the last value is in the finished record.
  const kept = await queue.enqueue(work, null);
  const first = new Worker("q", [work], { redis: redis.url, handleSignals: false, logger: quiet });
  first.addEventListener("completed", () => first.stop());
  await first.run();
  const info = await kept.info();
  assert.deepEqual([info?.state, info?.progress], ["completed", 20]);
  const handle = await queue.enqueue(work, null);
  const worker = new Worker("q", [work], {
    redis: redis.url,
    keepResult: 0,
    handleSignals: false,
    logger: quiet,
  });
  worker.addEventListener("completed", () => worker.stop());
  await worker.run();
  // keepResult 0: the record went with the ack. The coalesced write went out before it, on the
  // same connection, so nothing is left to land once run() has resolved.
  assert.equal(await handle.info(), undefined);
  await using db = inspect(redis.url);
  assert.equal(await db.exists(queue.keys.job(handle.id)), 0);
});

Deno.test("ctx.progress input: numbers 0 to 100, small JSON objects; the rest gets its own error", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const errors: string[] = [];
  const work = task("work", async (_: null, ctx: TaskContext) => {
    for (const bad of [-1, 101, NaN, Infinity, "50", null, undefined, true]) {
      try {
        // deno-lint-ignore no-explicit-any
        await ctx.progress(bad as any);
        errors.push(`accepted ${String(bad)}`);
      } catch (err) {
        errors.push(`${(err as Error).name}: ${(err as Error).message}`);
      }
    }
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await ctx.progress(cyclic).catch((err) => errors.push(`${err.name}: ${err.message}`));
    await ctx.progress({ big: "x".repeat(5_000) }).catch((err) =>
      errors.push(`${err.name}: ${err.message}`)
    );
    // The edges that are allowed.
    await ctx.progress(0);
    await ctx.progress(100);
    await ctx.progress({ b: "x".repeat(4_088) }); // 4,096 bytes exactly
    await ctx.progress([1, 2, 3]);
  });
  const handle = await queue.enqueue(work, null);
  const worker = new Worker("q", [work], { redis: redis.url, handleSignals: false, logger: quiet });
  worker.addEventListener("completed", () => worker.stop());
  worker.addEventListener("retrying", (e) => {
    errors.push(`the handler failed: ${e.detail.error.message}`);
    worker.stop();
  });
  await worker.run();
  const what = `Cannot report the progress of job ${handle.id} (work)`;
  assert.deepEqual(errors.slice(0, 8), [
    `RangeError: ${what}: a number must be 0 to 100, got -1`,
    `RangeError: ${what}: a number must be 0 to 100, got 101`,
    `RangeError: ${what}: a number must be 0 to 100, got NaN`,
    `RangeError: ${what}: a number must be 0 to 100, got Infinity`,
    `TypeError: ${what}: it must be a number 0 to 100 or a JSON object, got "50"`,
    `TypeError: ${what}: it must be a number 0 to 100 or a JSON object, got null`,
    `TypeError: ${what}: it must be a number 0 to 100 or a JSON object, got undefined`,
    `TypeError: ${what}: it must be a number 0 to 100 or a JSON object, got true`,
  ]);
  assert.match(
    errors[8]!,
    new RegExp(`^TypeError: ${what.replace(/[()]/g, "\\$&")}: JSON cannot hold it: `),
  );
  assert.equal(errors[9], `RangeError: ${what}: it takes 5010 bytes as JSON, more than 4096`);
  assert.equal(errors.length, 10);
  assert.deepEqual((await handle.info())?.progress, [1, 2, 3]);
});

Deno.test("progress from a worker process, read by this one; and on Redis Cluster", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new WorkerProcess(redis.url, {});
  const handle = await queue.enqueue("progress", { steps: 5 });
  await worker.waitFor((e) => e.ev === "completed" && e.id === handle.id, "the job done");
  assert.deepEqual((await handle.info())?.progress, { step: 5, of: 5 });
  await using cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
  const config = { cluster: [...cluster.urls] };
  await using cq = new Queue("q", { redis: config });
  const on = task("on", async (_: null, ctx: TaskContext) => {
    await ctx.progress(42);
  });
  const h = await cq.enqueue(on, null);
  const w = new Worker("q", [on], { redis: config, handleSignals: false, logger: quiet });
  w.addEventListener("completed", () => w.stop());
  await w.run();
  assert.equal((await h.info())?.progress, 42);
});

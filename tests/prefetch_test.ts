// The Worker's adaptive prefetch (no prefetch option): slow jobs are held no more than with
// prefetch = concurrency; fast jobs widen the window through the reads behind settles.
import assert from "node:assert/strict";
import { Queue, task, Worker } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { inspect, pendingCount, waitForRedis } from "./_helpers.ts";

const quiet = { info() {}, warn() {}, error() {} };

/** A slow task whose jobs wait on `gate`; `twoStarted` resolves when two have started. */
function slowJobs() {
  const gate = Promise.withResolvers<void>();
  const twoStarted = Promise.withResolvers<void>();
  let started = 0;
  const slow = task("slow", () => {
    if (++started === 2) twoStarted.resolve();
    return gate.promise;
  });
  return { gate, twoStarted, slow };
}

Deno.test("with no prefetch option, slow jobs are held concurrency + concurrency at a time", async () => {
  await using redis = await startRedis();
  const gate = Promise.withResolvers<void>();
  const slow = task("slow", () => gate.promise);
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueueMany(slow, Array.from({ length: 40 }, () => ({ data: null })));
  await using db = inspect(redis.url);
  const worker = new Worker("q", [slow], {
    redis: redis.url,
    concurrency: 3,
    idleTimeout: 300,
    handleSignals: false,
    logger: quiet,
  });
  let done = 0;
  const all = Promise.withResolvers<void>();
  worker.addEventListener("completed", () => ++done === 40 && all.resolve());
  const run = worker.run();
  await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 6, "6 held");
  // Through a heartbeat the worker reads nothing more.
  const before = await db.zscore(queue.keys.workers, worker.consumer!);
  await waitForRedis(
    async () => (await db.zscore(queue.keys.workers, worker.consumer!)) !== before,
    "a heartbeat",
  );
  assert.equal(await pendingCount(db, queue.keys.stream), 6);
  gate.resolve();
  await all.promise;
  await worker.stop();
  await run;
});

Deno.test("with no prefetch option, fast jobs widen the window, and an idle worker's read does not", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const { gate, twoStarted, slow } = slowJobs();
  const noop = task("noop", () => {});
  const N = 3_000;
  await queue.enqueueMany(noop, Array.from({ length: N }, () => ({ data: null })));
  const worker = new Worker("q", [noop, slow], {
    redis: redis.url,
    concurrency: 2,
    idleTimeout: 60_000,
    handleSignals: false,
    logger: quiet,
  });
  let done = 0, peak = 0;
  const fast = Promise.withResolvers<void>();
  const samples: Promise<void>[] = [];
  worker.addEventListener("completed", (e) => {
    if (e.detail.job.task !== "noop") return;
    if (done++ % 10 === 0) {
      samples.push(
        pendingCount(db, queue.keys.stream).then((n) => void (peak = Math.max(peak, n))),
      );
    }
    if (done === N) fast.resolve();
  });
  const run = worker.run();
  await fast.promise;
  await Promise.all(samples);
  assert.ok(peak > 4, `the window never grew past concurrency + concurrency: peak ${peak}`);
  assert.ok(peak <= 2 + 1_000, `the window grew past concurrency + 1,000: peak ${peak}`);
  // The stream is empty now and the worker waits in a blocking read: slow jobs arriving now
  // are taken no more than concurrency + concurrency at a time, whatever the fast ones did.
  await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 0, "drained");
  await queue.enqueueMany(slow, Array.from({ length: 50 }, () => ({ data: null })));
  await twoStarted.promise;
  assert.equal(await pendingCount(db, queue.keys.stream), 4);
  gate.resolve();
  await worker.stop();
  await run;
});

Deno.test("prefetch 0 holds only the running jobs, also with fast jobs", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const noop = task("noop", () => {});
  const N = 500;
  await queue.enqueueMany(noop, Array.from({ length: N }, () => ({ data: null })));
  const worker = new Worker("q", [noop], {
    redis: redis.url,
    concurrency: 2,
    prefetch: 0,
    idleTimeout: 60_000,
    handleSignals: false,
    logger: quiet,
  });
  let done = 0, peak = 0;
  const all = Promise.withResolvers<void>();
  const samples: Promise<void>[] = [];
  worker.addEventListener("completed", () => {
    samples.push(pendingCount(db, queue.keys.stream).then((n) => void (peak = Math.max(peak, n))));
    if (++done === N) all.resolve();
  });
  const run = worker.run();
  await all.promise;
  await Promise.all(samples);
  await worker.stop();
  await run;
  assert.ok(peak > 0 && peak <= 2, `peak pending ${peak}`);
});

Deno.test("with no prefetch option, slow jobs read right behind fast ones are given back for an idle peer", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const { gate, twoStarted, slow } = slowJobs();
  const noop = task("noop", () => {});
  // One stream: fast jobs that widen the window, then slow ones read in the wide window.
  await queue.enqueueMany(noop, Array.from({ length: 5_000 }, () => ({ data: null })));
  await queue.enqueueMany(slow, Array.from({ length: 300 }, () => ({ data: null })));
  const options = {
    redis: redis.url,
    concurrency: 2,
    idleTimeout: 60_000,
    handleSignals: false,
    logger: quiet,
  };
  const worker = new Worker("q", [noop, slow], options);
  // Every completion counts, from the start: under load a stall can read as a rate near zero
  // and give back fast jobs too (to the stream's tail, behind the slow ones), so they may be
  // left waiting at the end.
  let done = 0;
  worker.addEventListener("completed", () => void done++);
  const run = worker.run();
  await twoStarted.promise;
  // Both slots hold slow jobs that never end while the gate is shut: the worker soon measures
  // no progress and keeps no more than concurrency + concurrency.
  await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) <= 4, "given back");
  // An idle peer now gets slow jobs too.
  const peerStarted = Promise.withResolvers<void>();
  const peerSlow = task("slow", () => {
    peerStarted.resolve();
    return gate.promise;
  });
  const peer = new Worker("q", [noop, peerSlow], options);
  peer.addEventListener("completed", () => void done++);
  const peerRun = peer.run();
  await peerStarted.promise;
  gate.resolve();
  await Promise.all([worker.stop(), peer.stop()]);
  await Promise.all([run, peerRun]);
  // Nothing lost: every job either ran or waits in the stream, none still pending.
  assert.equal(await pendingCount(db, queue.keys.stream), 0);
  assert.equal(done + (await queue.stats()).waiting, 5_000 + 300);
});

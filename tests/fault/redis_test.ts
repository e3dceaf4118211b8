/**
 * Fault scenarios on the Redis side: killed and restarted with and without persistence, and
 * not there yet when a worker starts. Counted in a ledger kept outside the Redis under test.
 */
import assert from "node:assert/strict";
import { Queue } from "../../mod.ts";
import { startRedis } from "../../src/testing.ts";
import { inspect, pendingCount, waitForRedis, WorkerProcess } from "../_helpers.ts";
import { Ledger, work } from "./_ledger.ts";

Deno.test("Redis killed and restarted mid-run with AOF always: workers reconnect, nothing lost", async () => {
  await using redis = await startRedis({ persistence: "always" });
  await using ledger = await Ledger.start();
  const options = { ledger: ledger.url, concurrency: 2, prefetch: 2, idle: 2_000 };
  const workers = [new WorkerProcess(redis.url, options), new WorkerProcess(redis.url, options)];
  try {
    await Promise.all(workers.map((w) => w.waitFor((e) => e.ev === "ready", "ready")));
    {
      await using queue = new Queue("q", { redis: redis.url });
      ledger.add((await queue.enqueueMany("work", work(2_000, 2, "j"))).map((h) => h.id));
    }
    await ledger.waitForCommits(500);
    await redis.kill();
    await redis.restart();
    await ledger.waitForCommits(2_000, 90_000);
    await using db = inspect(redis.url);
    await waitForRedis(
      async () => (await pendingCount(db, "sluice:{q}:stream")) === 0,
      "pending 0",
    );
    for (const w of workers) assert.equal(w.count("exited"), 0, "no worker gave up");
    await ledger.verdict(
      "Redis restart (AOF always)",
      "kill -9 redis-server mid-run, restart it",
      workers.length * (2 + 2),
    );
  } finally {
    await Promise.all(workers.map((w) => w[Symbol.asyncDispose]()));
  }
});

Deno.test("Redis restarted empty: the missing group is recreated and logged, work goes on", async () => {
  await using redis = await startRedis({ persistence: "none" });
  await using ledger = await Ledger.start();
  const worker = new WorkerProcess(redis.url, { ledger: ledger.url, concurrency: 2, idle: 2_000 });
  try {
    await worker.waitFor((e) => e.ev === "ready", "ready");
    {
      await using queue = new Queue("q", { redis: redis.url });
      ledger.add((await queue.enqueueMany("work", work(50, 1, "before"))).map((h) => h.id));
    }
    await ledger.waitForCommits(50);
    await redis.kill();
    await redis.restart();
    await worker.waitFor(
      (e) => e.ev === "warn" && /consumer group .* is missing/.test(String(e.message)),
      "the NOGROUP warning",
    );
    {
      await using queue = new Queue("q", { redis: redis.url });
      ledger.add((await queue.enqueueMany("work", work(200, 1, "after"))).map((h) => h.id));
    }
    await waitForRedis(async () => {
      const t = await ledger.tally();
      return t.lost.length === 0;
    }, "the jobs enqueued after the restart");
    assert.equal(worker.count("exited"), 0, "the worker did not crash");
    await ledger.verdict(
      "Redis restart (no persistence)",
      "kill -9 redis-server, restart it empty",
      0,
    );
  } finally {
    await worker[Symbol.asyncDispose]();
  }
});

Deno.test("Redis down when a worker starts: it retries with a log line, then consumes", async () => {
  const probe = await startRedis();
  const port = probe.port;
  await probe.stop();
  await using ledger = await Ledger.start();
  const url = `redis://127.0.0.1:${port}`;
  const worker = new WorkerProcess(url, { ledger: ledger.url, concurrency: 2, idle: 2_000 });
  try {
    await worker.waitFor(
      (e) =>
        e.ev === "warn" && /cannot reach Redis .*reconnecting with backoff/.test(String(e.message)),
      "a log line saying Redis is unreachable",
    );
    await using _redis = await startRedis({ port });
    await using queue = new Queue("q", { redis: url });
    ledger.add((await queue.enqueueMany("work", work(100, 1, "j"))).map((h) => h.id));
    await ledger.waitForCommits(100, 30_000);
    await worker.waitFor(
      (e) => e.ev === "warn" && /Redis is reachable again/.test(String(e.message)),
      "a log line saying Redis is back",
    );
    await ledger.verdict("Redis late", "no Redis when the worker starts; it appears later", 0);
  } finally {
    await worker[Symbol.asyncDispose]();
  }
});

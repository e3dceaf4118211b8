/**
 * Rate limits across worker processes, with every handler start written to a ledger kept in a
 * Redis of its own: a task limit of 50 a second over 3 workers, and a 429 in one worker pausing
 * the task in another.
 */
import assert from "node:assert/strict";
import type { Redis } from "ioredis";
import { Queue } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { busiest, inspect, waitForRedis, WorkerProcess } from "./_helpers.ts";

interface Start {
  id: string;
  task: string;
  attempt: number;
  pid: number;
  at: number;
}

async function starts(ledger: Redis): Promise<Start[]> {
  return (await ledger.lrange("starts", 0, -1)).map((line) => JSON.parse(line));
}

Deno.test("3 worker processes, 50 starts a second, 400 jobs: no 1 s window holds more than 50, nothing charged", async () => {
  await using redis = await startRedis();
  await using ledgerRedis = await startRedis();
  await using ledger = inspect(ledgerRedis.url);
  await using queue = new Queue("q", { redis: redis.url });
  const options = { ledger: ledgerRedis.url, rate: "50:1000", concurrency: 10, prefetch: 10 };
  await using a = new WorkerProcess(redis.url, options);
  await using b = new WorkerProcess(redis.url, options);
  await using c = new WorkerProcess(redis.url, options);
  const workers = [a, b, c];
  await Promise.all(workers.map((w) => w.waitFor((e) => e.ev === "ready", "ready")));
  const n = 400;
  const began = Date.now();
  await queue.enqueueMany("limited", Array.from({ length: n }, () => ({ data: { ms: 5 } })));
  const completed = () => workers.reduce((sum, w) => sum + w.count("completed"), 0);
  await waitForRedis(() => Promise.resolve(completed() >= n), `${n} completed`, 60_000);
  const took = Date.now() - began;
  const log = await starts(ledger);
  assert.equal(log.length, n, "one start per job");
  assert.equal(new Set(log.map((s) => s.id)).size, n);
  assert.ok(log.every((s) => s.attempt === 1), "no job was charged an attempt");
  const most = busiest(log.map((s) => s.at), 1_000);
  assert.ok(most <= 50, `a 1 s window held ${most} starts`);
  assert.ok(took >= 7_000, `400 jobs at 50 a second took ${took} ms`);
  for (const w of workers) {
    assert.equal(w.count("retrying") + w.count("dead"), 0, w.log());
  }
  // Every worker took part, and jobs over the limit were put off, not failed.
  assert.ok(workers.every((w) => w.count("completed") > 0));
  assert.ok(workers.reduce((sum, w) => sum + w.count("rateLimited"), 0) >= n - 50);
  const stats = await queue.stats();
  assert.equal(stats.dead + stats.delayed + stats.waiting, 0);
});

Deno.test("a 429 in one worker process pauses the task in another; the job then completes with attempt 1", async () => {
  await using redis = await startRedis();
  await using ledgerRedis = await startRedis();
  await using ledger = inspect(ledgerRedis.url);
  await using queue = new Queue("q", { redis: redis.url });
  const options = { ledger: ledgerRedis.url, concurrency: 2 };
  await using a = new WorkerProcess(redis.url, options);
  await using b = new WorkerProcess(redis.url, options);
  await Promise.all([a, b].map((w) => w.waitFor((e) => e.ev === "ready", "ready")));
  const hold = 1_500;
  await queue.enqueue("api", { ms: 1, hold }, { id: "first" });
  const said = await waitForRedis(
    () => Promise.resolve([...a.events, ...b.events].find((e) => e.ev === "rateLimited")),
    "a 429",
  );
  const at = said.at as number;
  // Jobs of the paused task, enqueued now, wait on both workers for the rest of the pause.
  await queue.enqueueMany(
    "api",
    Array.from({ length: 10 }, (_, i) => ({ id: `n${i}`, data: { ms: 1 } })),
  );
  const result = queue.job("first").result({ signal: AbortSignal.timeout(20_000) });
  await result;
  await Promise.all(
    Array.from(
      { length: 10 },
      (_, i) => queue.job(`n${i}`).result({ signal: AbortSignal.timeout(20_000) }),
    ),
  );
  const log = await starts(ledger);
  const firstRuns = log.filter((s) => s.id === "first");
  assert.equal(firstRuns.length, 2, "it ran, said 429, and ran again");
  assert.ok(firstRuns.every((s) => s.attempt === 1), "no attempt charged");
  const after = log.filter((s) => s.at > at + 1 || s.id !== "first");
  const pids = new Set(after.map((s) => s.pid));
  for (const s of after) {
    // The pause is timed on Redis's clock from the HOLD; the event fired a moment after.
    assert.ok(s.at >= at + hold - 100, `${s.id} started ${s.at - at} ms after the 429`);
  }
  assert.equal(pids.size, 2, "both workers ran jobs after the pause");
  const info = await queue.job("first").info();
  assert.equal(info?.state, "completed");
  assert.equal(info?.attempt, 1);
  assert.ok(Date.now() - at >= hold, "the test outlived the pause");
});

Deno.test("kill -9 of a worker under a rate limit: its jobs are reclaimed and run, none lost, no 1 s window over the limit", async () => {
  await using redis = await startRedis();
  await using ledgerRedis = await startRedis();
  await using ledger = inspect(ledgerRedis.url);
  await using queue = new Queue("q", { redis: redis.url });
  const options = {
    ledger: ledgerRedis.url,
    rate: "20:1000",
    concurrency: 4,
    prefetch: 4,
    idle: 1_000,
  };
  await using a = new WorkerProcess(redis.url, options);
  await using b = new WorkerProcess(redis.url, options);
  await Promise.all([a, b].map((w) => w.waitFor((e) => e.ev === "ready", "ready")));
  const n = 100;
  const handles = await queue.enqueueMany(
    "limited",
    Array.from({ length: n }, () => ({ data: { ms: 50 } })),
  );
  await waitForRedis(async () => (await ledger.llen("starts")) >= 30, "30 starts");
  a.signal("SIGKILL");
  await a.status;
  const signal = AbortSignal.timeout(60_000);
  await Promise.all(handles.map((h) => h.result({ signal })));
  const log = await starts(ledger);
  assert.equal(new Set(log.map((s) => s.id)).size, n, "every job ran");
  const most = busiest(log.map((s) => s.at), 1_000);
  assert.ok(most <= 20, `a 1 s window held ${most} starts (reruns of reclaimed jobs count)`);
  const stats = await queue.stats();
  assert.equal(stats.dead, 0);
  assert.ok(b.count("completed") > 0 && log.some((s) => s.pid === b.pid));
});

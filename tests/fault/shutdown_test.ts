/**
 * Process-level shutdown and crash tests: real worker processes, real signals, real Redis.
 */
import assert from "node:assert/strict";
import { Queue } from "../../mod.ts";
import { startRedis } from "../../src/testing.ts";
import { inspect, pendingCount, waitForRedis, WorkerProcess } from "../_helpers.ts";

const sleepJobs = (prefix: string, n: number, ms: number) =>
  Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, data: { ms } }));

Deno.test("SIGTERM: unstarted jobs go to a waiting peer at once, running ones finish, exit 0", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  // idleTimeout is long, so only a release (not a reclaim) can move jobs to the peer in time.
  await using a = new WorkerProcess(redis.url, { concurrency: 2, prefetch: 5, idle: 60_000 });
  await a.waitFor((e) => e.ev === "ready", "ready");
  await queue.enqueueMany("sleep", [...sleepJobs("run", 2, 1_500), ...sleepJobs("wait", 5, 10)]);
  await a.waitForCount("started", 2);
  await using db = inspect(redis.url);
  await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 7, "7 held");

  await using b = new WorkerProcess(redis.url, { concurrency: 5, idle: 60_000 });
  await b.waitFor((e) => e.ev === "ready", "peer ready");
  a.signal("SIGTERM");

  for (let i = 0; i < 5; i++) {
    await b.waitFor((e) => e.ev === "completed" && e.id === `wait${i}`, `peer ran wait${i}`);
  }
  for (let i = 0; i < 2; i++) {
    await a.waitFor((e) => e.ev === "completed" && e.id === `run${i}`, `run${i} finished`);
  }
  const status = await a.status;
  assert.equal(status.code, 0, a.log());
  assert.equal(a.count("started"), 2, "the stopping worker started nothing new");
  assert.equal(b.count("started", "run0") + b.count("started", "run1"), 0);
  assert.equal(await pendingCount(db, queue.keys.stream), 0);
  const consumers = await db.xinfo("CONSUMERS", queue.keys.stream, "sluice") as unknown[];
  assert.equal(consumers.length, 1, "the stopped worker deleted its consumer");
});

Deno.test("SIGTERM: a job that overruns the grace period sees ShutdownError and a peer runs it", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using a = new WorkerProcess(redis.url, { concurrency: 1, grace: 300, idle: 60_000 });
  await queue.enqueue("sleep", { ms: 60_000 }, { id: "long" });
  await a.waitFor((e) => e.ev === "started" && e.id === "long", "long started");
  await using b = new WorkerProcess(redis.url, { "max-sleep": 10, idle: 60_000 });
  await b.waitFor((e) => e.ev === "ready", "peer ready");
  a.signal("SIGTERM");
  const aborted = await a.waitFor((e) => e.ev === "aborted" && e.id === "long", "abort");
  assert.equal(aborted.reason, "ShutdownError");
  const done = await b.waitFor((e) => e.ev === "completed" && e.id === "long", "peer ran it");
  assert.equal(done.attempt, 1, "a shutdown does not charge an attempt");
  assert.equal((await a.status).code, 0, a.log());
  assert.equal(a.count("dead") + a.count("retrying"), 0);
});

Deno.test("SIGTERM twice: the worker releases everything and exits 0 at once", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using a = new WorkerProcess(redis.url, { concurrency: 1, grace: 60_000, idle: 60_000 });
  await queue.enqueue("sleep", { ms: 60_000, ignoreSignal: true }, { id: "stubborn" });
  await a.waitFor((e) => e.ev === "started" && e.id === "stubborn", "started");
  a.signal("SIGTERM");
  // Two signals sent back to back can merge into one: wait until the first was handled.
  await a.waitFor((e) => e.ev === "info" && String(e.message).includes("stopping"), "stopping");
  a.signal("SIGTERM");
  assert.equal((await a.status).code, 0, a.log());
  await using db = inspect(redis.url);
  assert.equal(await pendingCount(db, queue.keys.stream), 0, "released, not left pending");
  assert.equal(await db.xlen(queue.keys.stream), 1, "the job is back in the stream");
});

Deno.test("SIGKILL: a peer reclaims the jobs after idleTimeout, with deliveries 2", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using a = new WorkerProcess(redis.url, { concurrency: 2, prefetch: 2, idle: 600 });
  await queue.enqueueMany("sleep", sleepJobs("k", 4, 60_000));
  await a.waitForCount("started", 2);
  await using db = inspect(redis.url);
  await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 4, "4 held");
  a.signal("SIGKILL");
  await a.status;
  await using b = new WorkerProcess(redis.url, { concurrency: 4, idle: 600, "max-sleep": 10 });
  for (let i = 0; i < 4; i++) {
    const done = await b.waitFor((e) => e.ev === "completed" && e.id === `k${i}`, `k${i}`);
    assert.equal(done.deliveries, 2);
  }
  await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 0, "drained");
});

Deno.test("SIGSTOP past idleTimeout: the peer's completion stands, the stale ack is rejected", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using a = new WorkerProcess(redis.url, { concurrency: 1, idle: 500 });
  await queue.enqueue("sleep", { ms: 1_000, ignoreSignal: true }, { id: "s" });
  await a.waitFor((e) => e.ev === "started" && e.id === "s", "started");
  a.signal("SIGSTOP");
  await using b = new WorkerProcess(redis.url, { idle: 500, "max-sleep": 10 });
  const done = await b.waitFor((e) => e.ev === "completed" && e.id === "s", "peer ran it");
  assert.equal(done.deliveries, 2);
  a.signal("SIGCONT");
  const lost = await a.waitFor((e) => e.ev === "error" && e.id === "s", "stale ack rejected");
  assert.equal(lost.name, "LeaseLostError", a.log());
  assert.equal(a.count("completed", "s"), 0, "the stale worker never completed it");
  await using db = inspect(redis.url);
  assert.equal(await pendingCount(db, queue.keys.stream), 0, "no steal-back");
  assert.equal(await db.xlen(queue.keys.stream), 0);
  assert.equal(await db.xlen(queue.keys.dead), 0);
  assert.equal(b.count("started", "s"), 1);
});

Deno.test("a worker at concurrency 64 holds at most 3 Redis connections", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using a = new WorkerProcess(redis.url, { concurrency: 64, prefetch: 64 });
  await queue.enqueueMany("sleep", sleepJobs("c", 100, 60_000));
  await a.waitForCount("started", 64);
  await using db = inspect(redis.url);
  const list = await db.client("LIST") as string;
  const mine = list.split("\n").filter((line) => new RegExp(`-${a.pid}(-|\\s)`).test(line));
  assert.ok(mine.length >= 2 && mine.length <= 3, list);
});

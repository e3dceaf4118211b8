/** Delayed jobs, retries with backoff, and timeouts. */
import assert from "node:assert/strict";
import { Queue, task, ValidationError, Worker, type WorkerEventDetail } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { inspect, waitForRedis, WorkerProcess } from "./_helpers.ts";

const quiet = { info() {}, warn() {}, error() {} };
const options = (url: string) => ({ redis: url, handleSignals: false, logger: quiet });

function events<K extends keyof WorkerEventDetail>(
  // deno-lint-ignore no-explicit-any
  worker: Worker<any>,
  type: K,
): WorkerEventDetail[K][] {
  const seen: WorkerEventDetail[K][] = [];
  worker.addEventListener(type, (e) => seen.push(e.detail));
  return seen;
}

Deno.test("a delayed job waits in the delayed set and runs once it is due", async () => {
  await using redis = await startRedis();
  const stamp = task("stamp", () => Date.now());
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const before = Date.now();
  const handle = await queue.enqueue(stamp, null, { delay: 300 });
  assert.equal(handle.entryId, undefined);
  assert.ok(handle.dueAt! >= before + 300, `${handle.dueAt} vs ${before}`);
  assert.equal(await db.xlen(queue.keys.stream), 0);
  assert.equal(await db.zcard(queue.keys.delayed), 1);
  await using worker = new Worker("q", [stamp], options(redis.url));
  const done = new Promise<WorkerEventDetail["completed"]>((resolve) =>
    worker.addEventListener("completed", (e) => resolve(e.detail))
  );
  const run = worker.run();
  const { result } = await done;
  assert.ok((result as number) >= handle.dueAt!, "not run before it was due");
  assert.equal(await db.zcard(queue.keys.delayed), 0);
  assert.equal(await db.hlen(queue.keys.payloads), 0);
  await worker.stop();
  await run;
});

Deno.test("a sleeping worker wakes for a delayed job enqueued after it went to sleep", async () => {
  await using redis = await startRedis();
  const stamp = task("stamp", () => Date.now());
  await using queue = new Queue("q", { redis: redis.url });
  // A long idleTimeout: without a wake-up, the worker would sleep up to 10 s per read.
  await using worker = new Worker("q", [stamp], { ...options(redis.url), idleTimeout: 60_000 });
  const done = new Promise<number>((resolve) =>
    worker.addEventListener("completed", (e) => resolve(e.detail.result as number))
  );
  const run = worker.run();
  await using db = inspect(redis.url);
  await waitForRedis(async () => /blocked_clients:1/.test(await db.info("clients")), "asleep");
  const handle = await queue.enqueue(stamp, null, { delay: 200 });
  const ranAt = await done;
  assert.ok(ranAt >= handle.dueAt!, "not early");
  assert.ok(ranAt - handle.dueAt! < 2_000, `woke ${ranAt - handle.dueAt!} ms late`);
  await worker.stop();
  await run;
});

Deno.test("a job with at in the past runs at once; bad schedules are refused before writing", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const handle = await queue.enqueue("t", 1, { at: new Date(Date.now() - 60_000) });
  assert.ok(handle.dueAt! < Date.now());
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ delay: -1 }, /delay must be an integer from 0 to .* got -1/],
    [{ delay: 1.5 }, /delay must be an integer/],
    [{ delay: 10, at: Date.now() }, /give delay or at, not both/],
    [{ at: new Date("nope") }, /at must be a valid Date or epoch ms/],
    [{ timeout: 0 }, /timeout must be an integer from 1 to/],
    [{ retry: { attempts: 0 } }, /retry.attempts must be an integer from 1/],
  ];
  for (const [opts, message] of bad) {
    await assert.rejects(queue.enqueue("t", 1, opts), (e: Error) => {
      assert.ok(e instanceof ValidationError, String(e));
      assert.match(e.message, message);
      assert.match(e.message, /^Cannot enqueue t: /);
      return true;
    });
  }
  assert.equal(await db.zcard(queue.keys.delayed), 1, "only the good one was written");
});

Deno.test("4 worker processes racing promote each delayed job exactly once", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const workers = Array.from({ length: 4 }, () => new WorkerProcess(redis.url, { concurrency: 8 }));
  try {
    await Promise.all(workers.map((w) => w.waitFor((e) => e.ev === "ready", "ready")));
    const jobs = Array.from(
      { length: 200 },
      (_, i) => ({ id: `d${i}`, data: { ms: 1 }, delay: 500 }),
    );
    await queue.enqueueMany("sleep", jobs);
    await using db = inspect(redis.url);
    await waitForRedis(async () => {
      const done = workers.reduce((n, w) => n + w.count("completed"), 0);
      return done >= 200 && (await db.xlen(queue.keys.stream)) === 0;
    }, "all 200 done");
    for (const { id } of jobs) {
      const runs = workers.reduce((n, w) => n + w.count("started", id), 0);
      assert.equal(runs, 1, `${id} ran ${runs} times`);
    }
    assert.ok(workers.filter((w) => w.count("completed") > 0).length >= 2, "they shared the work");
  } finally {
    await Promise.all(workers.map((w) => w[Symbol.asyncDispose]()));
  }
});

Deno.test("retries wait out their backoff on the delayed set, then succeed", async () => {
  await using redis = await startRedis();
  const flaky = task("flaky", (_: null, ctx) => {
    if (ctx.job.attempt < 3) throw new Error(`no ${ctx.job.attempt}`);
    return ctx.job.attempt;
  }, { retry: { attempts: 3, backoff: { type: "fixed", delay: 200 } } });
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  await using worker = new Worker("q", [flaky], options(redis.url));
  const retrying = events(worker, "retrying");
  const done = new Promise<WorkerEventDetail["completed"]>((resolve) =>
    worker.addEventListener("completed", (e) => resolve(e.detail))
  );
  const firstRetry = new Promise<void>((resolve) =>
    worker.addEventListener("retrying", () => resolve(), { once: true })
  );
  const run = worker.run();
  await queue.enqueue(flaky, null, { id: "f" });
  await firstRetry;
  await waitForRedis(async () => (await db.zscore(queue.keys.delayed, "f")) !== null, "scheduled");
  const { result } = await done;
  assert.equal(result, 3);
  assert.deepEqual(retrying.map((r) => [r.error.message, r.delay]), [["no 1", 200], ["no 2", 200]]);
  await worker.stop();
  await run;
});

Deno.test("a retry policy given at enqueue wins over the task's", async () => {
  await using redis = await startRedis();
  let calls = 0;
  const fails = task("fails", () => {
    calls++;
    throw new Error("boom");
  }, { retry: { attempts: 5, backoff: { type: "fixed", delay: 0 } } });
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new Worker("q", [fails], options(redis.url));
  const dead = new Promise<WorkerEventDetail["dead"]>((resolve) =>
    worker.addEventListener("dead", (e) => resolve(e.detail))
  );
  const run = worker.run();
  await queue.enqueue(fails, null, { retry: { attempts: 2 } });
  const d = await dead;
  assert.equal(d.reason, "failed");
  assert.equal(calls, 2);
  await worker.stop();
  await run;
});

Deno.test("a timeout aborts ctx.signal with TimeoutError and dead-letters as timeout", async () => {
  await using redis = await startRedis();
  const slow = task("slow", async (_: null, ctx) => {
    await new Promise((_, reject) =>
      ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason))
    );
  }, { timeout: 100, retry: { attempts: 1 } });
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new Worker("q", [slow], options(redis.url));
  const dead = new Promise<WorkerEventDetail["dead"]>((resolve) =>
    worker.addEventListener("dead", (e) => resolve(e.detail))
  );
  const run = worker.run();
  await queue.enqueue(slow, null);
  const d = await dead;
  assert.equal(d.reason, "timeout");
  assert.equal(d.error.name, "TimeoutError");
  assert.equal(d.job.signal.reason.name, "TimeoutError");
  await worker.stop();
  await run;
});

Deno.test("a handler that ignores its timeout is settled at once but keeps its slot", async () => {
  await using redis = await startRedis();
  const log: string[] = [];
  const stubborn = task("stubborn", async (name: string) => {
    log.push(`start ${name}`);
    if (name === "a") await new Promise((resolve) => setTimeout(resolve, 600)); // ignores signal
    log.push(`end ${name}`);
  }, { timeout: 100, retry: { attempts: 1 } });
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new Worker("q", [stubborn], { ...options(redis.url), concurrency: 1 });
  worker.addEventListener("dead", () => log.push("dead a"));
  const completedB = new Promise<void>((resolve) =>
    worker.addEventListener("completed", () => resolve())
  );
  const run = worker.run();
  await queue.enqueueMany(stubborn, [{ data: "a" }, { data: "b" }]);
  await completedB;
  assert.deepEqual(log, ["start a", "dead a", "end a", "start b", "end b"]);
  await worker.stop();
  await run;
});

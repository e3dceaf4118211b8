import assert from "node:assert/strict";
import {
  NonRetryableError,
  Queue,
  type StandardSchemaV1,
  task,
  Worker,
  type WorkerEventDetail,
  type WorkerEventName,
} from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { inspect, pendingCount, waitForRedis } from "./_helpers.ts";

const quiet = { info() {}, warn() {}, error() {} };

/** Resolves with the detail of the next `type` event that matches. */
function next<K extends WorkerEventName>(
  // deno-lint-ignore no-explicit-any
  worker: Worker<any>,
  type: K,
  match: (detail: WorkerEventDetail[K]) => boolean = () => true,
): Promise<WorkerEventDetail[K]> {
  return new Promise((resolve) => {
    const listener = (e: CustomEvent<WorkerEventDetail[K]>) => {
      if (!match(e.detail)) return;
      worker.removeEventListener(type, listener as EventListener);
      resolve(e.detail);
    };
    worker.addEventListener(type, listener);
  });
}

function deadFields(fields: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) out[fields[i]!] = fields[i + 1]!;
  return out;
}

Deno.test("a worker runs an enqueued job and reports its result", async () => {
  await using redis = await startRedis();
  const add = task("add", (d: { a: number; b: number }) => d.a + d.b);
  await using queue = new Queue("math", { redis: redis.url });
  await using worker = new Worker("math", [add], {
    redis: redis.url,
    handleSignals: false,
    logger: quiet,
  });
  const completed = next(worker, "completed");
  const running = worker.run();
  const handle = await queue.enqueue(add, { a: 2, b: 3 });
  const { job, result } = await completed;
  assert.equal(job.id, handle.id);
  assert.equal(result, 5);
  await worker.stop();
  await running;
  await using db = inspect(redis.url);
  assert.equal(await db.xlen(queue.keys.stream), 0);
});

Deno.test("a worker holds at most concurrency + prefetch jobs, as XPENDING shows", async () => {
  await using redis = await startRedis();
  const gate = Promise.withResolvers<void>();
  let running = 0, most = 0;
  const slow = task("slow", async () => {
    most = Math.max(most, ++running);
    await gate.promise;
    running--;
  });
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueueMany(slow, Array.from({ length: 30 }, () => ({ data: undefined })));
  await using db = inspect(redis.url);
  const worker = new Worker("q", [slow], {
    redis: redis.url,
    concurrency: 2,
    prefetch: 3,
    idleTimeout: 300,
    handleSignals: false,
    logger: quiet,
  });
  let done = 0, peak = 0;
  const all = Promise.withResolvers<void>();
  worker.addEventListener("completed", () => ++done === 30 && all.resolve());
  const samples: Promise<void>[] = [];
  const sampleErrors: unknown[] = [];
  worker.addEventListener("started", () => {
    const sample = pendingCount(db, queue.keys.stream).then((n) => void (peak = Math.max(peak, n)));
    // A failed sample must not hide the test's own failure as an unhandled rejection.
    samples.push(sample.catch((err) => void sampleErrors.push(err)));
  });
  const run = worker.run();
  await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 5, "5 held");
  // Through two heartbeats (renewal ticks) the worker reads nothing more.
  for (let beat = 0; beat < 2; beat++) {
    const before = await db.zscore(queue.keys.workers, worker.consumer!);
    await waitForRedis(
      async () => (await db.zscore(queue.keys.workers, worker.consumer!)) !== before,
      "a heartbeat",
    );
    assert.equal(await pendingCount(db, queue.keys.stream), 5);
  }
  gate.resolve();
  await all.promise;
  await worker.stop();
  await run;
  await Promise.all(samples);
  assert.deepEqual(sampleErrors, []);
  assert.equal(most, 2, "never more than concurrency running");
  assert.ok(peak <= 5, `held ${peak} > concurrency + prefetch`);
});

Deno.test("a job for a task the worker lacks is dead-lettered as unknown-task, and work goes on", async () => {
  await using redis = await startRedis();
  const ok = task("ok", () => "fine");
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueue("nope", { x: 1 }, { id: "lost" });
  await queue.enqueue(ok, null, { id: "found" });
  await using worker = new Worker("q", [ok], {
    redis: redis.url,
    handleSignals: false,
    logger: quiet,
  });
  const dead = next(worker, "dead");
  const completed = next(worker, "completed");
  const run = worker.run();
  const d = await dead;
  assert.equal(d.job.id, "lost");
  assert.equal(d.reason, "unknown-task");
  assert.equal((await completed).job.id, "found");
  await worker.stop();
  await run;
  await using db = inspect(redis.url);
  const entries = await db.xrange(queue.keys.dead, "-", "+");
  const f = deadFields(entries[0]![1]);
  assert.equal(f.reason, "unknown-task");
  assert.match(f.error!, /has no task named nope/);
});

Deno.test("a failing job is retried until it succeeds on its last attempt", async () => {
  await using redis = await startRedis();
  const attempts: number[] = [];
  const flaky = task("flaky", (_: null, ctx) => {
    attempts.push(ctx.job.attempt);
    if (ctx.job.attempt < 3) throw new Error(`fail ${ctx.job.attempt}`);
    return "third time";
  }, { retry: { attempts: 3 } });
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new Worker("q", [flaky], {
    redis: redis.url,
    handleSignals: false,
    logger: quiet,
  });
  const retries: string[] = [];
  worker.addEventListener("retrying", (e) => retries.push(e.detail.error.message));
  const completed = next(worker, "completed");
  const run = worker.run();
  await queue.enqueue(flaky, null);
  const { result, job } = await completed;
  assert.equal(result, "third time");
  assert.equal(job.attempt, 3);
  assert.deepEqual(attempts, [1, 2, 3]);
  assert.deepEqual(retries, ["fail 1", "fail 2"]);
  await worker.stop();
  await run;
});

Deno.test("a job that fails every attempt goes to the dead letters with reason failed", async () => {
  await using redis = await startRedis();
  const bad = task("bad", () => {
    throw new TypeError("always");
  }, { retry: { attempts: 2 } });
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new Worker("q", [bad], {
    redis: redis.url,
    handleSignals: false,
    logger: quiet,
  });
  const dead = next(worker, "dead");
  const run = worker.run();
  await queue.enqueue(bad, null, { id: "b" });
  const d = await dead;
  assert.equal(d.reason, "failed");
  assert.equal(d.job.attempt, 2);
  await worker.stop();
  await run;
  await using db = inspect(redis.url);
  const entries = await db.xrange(queue.keys.dead, "-", "+");
  assert.equal(entries.length, 1);
  const f = deadFields(entries[0]![1]);
  assert.equal(f.attempt, "2");
  assert.match(f.error!, /TypeError: always/);
  assert.equal(await pendingCount(db, queue.keys.stream), 0);
  assert.equal(await db.xlen(queue.keys.stream), 0);
});

Deno.test("NonRetryableError skips the remaining attempts", async () => {
  await using redis = await startRedis();
  let calls = 0;
  const charge = task("charge", () => {
    calls++;
    throw new NonRetryableError("card declined");
  }, { retry: { attempts: 5 } });
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new Worker("q", [charge], {
    redis: redis.url,
    handleSignals: false,
    logger: quiet,
  });
  const dead = next(worker, "dead");
  const run = worker.run();
  await queue.enqueue(charge, null);
  const d = await dead;
  assert.equal(d.reason, "non-retryable");
  assert.equal(calls, 1);
  await worker.stop();
  await run;
});

Deno.test("data that fails the task's schema at consume is dead-lettered as invalid-data", async () => {
  await using redis = await startRedis();
  const positive: StandardSchemaV1<unknown, number> = {
    "~standard": {
      version: 1,
      vendor: "test",
      validate: (value) =>
        typeof value === "number" && value > 0
          ? { value }
          : { issues: [{ message: "must be a positive number" }] },
    },
  };
  let ran = false;
  const sqrt = task("sqrt", (n: number) => {
    ran = true;
    return Math.sqrt(n);
  }, { schema: positive });
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueue("sqrt", -4); // by name: no schema check at enqueue
  await using worker = new Worker("q", [sqrt], {
    redis: redis.url,
    handleSignals: false,
    logger: quiet,
  });
  const dead = next(worker, "dead");
  const run = worker.run();
  const d = await dead;
  assert.equal(d.reason, "invalid-data");
  assert.match(d.error.message, /must be a positive number/);
  assert.equal(ran, false);
  await worker.stop();
  await run;
});

Deno.test("middleware wraps handlers in order and can replace the result", async () => {
  await using redis = await startRedis();
  const order: string[] = [];
  const echo = task("echo", (s: string) => {
    order.push("handler");
    return s;
  });
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new Worker("q", [echo], {
    redis: redis.url,
    handleSignals: false,
    logger: quiet,
  });
  worker
    .use(async (ctx, next) => {
      order.push("outer in");
      await next();
      ctx.result = `${ctx.result}!`;
      order.push("outer out");
    })
    .use(async (ctx, next) => {
      order.push(`inner in ${ctx.job.task}`);
      await next();
      order.push("inner out");
    });
  const completed = next(worker, "completed");
  const run = worker.run();
  await queue.enqueue(echo, "hi");
  assert.equal((await completed).result, "hi!");
  assert.deepEqual(order, ["outer in", "inner in echo", "handler", "inner out", "outer out"]);
  await worker.stop();
  await run;
});

Deno.test("lifespan's value reaches handlers and is disposed at stop", async () => {
  await using redis = await startRedis();
  const events: string[] = [];
  const lifespan = () => ({
    db: "connected",
    [Symbol.asyncDispose]: () => {
      events.push("disposed");
      return Promise.resolve();
    },
  });
  const use = task("use", (_: null, ctx) => (ctx.context as { db: string }).db);
  await using queue = new Queue("q", { redis: redis.url });
  const worker = new Worker("q", [use], {
    redis: redis.url,
    handleSignals: false,
    logger: quiet,
    lifespan,
  });
  const completed = next(worker, "completed");
  const run = worker.run();
  await queue.enqueue(use, null);
  assert.equal((await completed).result, "connected");
  assert.deepEqual(events, []);
  await worker.stop();
  await run;
  assert.deepEqual(events, ["disposed"]);
});

Deno.test("a job lasting 5 x idleTimeout is never reclaimed while its worker lives", async () => {
  await using redis = await startRedis();
  const starts: string[] = [];
  const make = (who: string) =>
    task("long", async (ms: number, ctx) => {
      starts.push(`${who}:${ctx.job.deliveries}`);
      await new Promise((resolve) => setTimeout(resolve, ms));
      return who;
    });
  await using queue = new Queue("q", { redis: redis.url });
  const options = { redis: redis.url, handleSignals: false, idleTimeout: 200, logger: quiet };
  await using a = new Worker("q", [make("a")], options);
  const completed = next(a, "completed");
  const runA = a.run();
  await queue.enqueue("long", 1_000);
  const started = next(a, "started");
  await started;
  await using b = new Worker("q", [make("b")], options);
  const runB = b.run();
  const { result, job } = await completed;
  assert.equal(result, "a");
  assert.equal(job.deliveries, 1);
  assert.deepEqual(starts, ["a:1"], "the peer never got it");
  await Promise.all([a.stop(), b.stop()]);
  await Promise.all([runA, runB]);
});

Deno.test("the signal option stops the worker gracefully, and stop() before run() is a no-op run", async () => {
  await using redis = await startRedis();
  const noop = task("noop", () => {});
  const controller = new AbortController();
  const worker = new Worker("q", [noop], {
    redis: redis.url,
    handleSignals: false,
    signal: controller.signal,
    logger: quiet,
  });
  const run = worker.run();
  controller.abort();
  await run;
  const idle = new Worker("q", [noop], { redis: redis.url, handleSignals: false, logger: quiet });
  await idle.stop();
  await idle.run();
  await assert.rejects(
    (async () => {
      const twice = new Worker("q", [noop], {
        redis: redis.url,
        handleSignals: false,
        logger: quiet,
      });
      const first = twice.run();
      try {
        await twice.run();
      } finally {
        await twice.stop();
        await first;
      }
    })(),
    /Cannot run worker q: it is already running/,
  );
});

Deno.test("Worker rejects bad options with the action, rule and value", () => {
  const noop = task("noop", () => {});
  const cases: [unknown, Record<string, unknown>, RegExp][] = [
    [
      [noop],
      { concurrency: 0 },
      /^Cannot create worker: concurrency must be an integer from 1 to 100000, got 0$/,
    ],
    [[noop], { concurrency: -1 }, /concurrency must be an integer from 1 to 100000, got -1/],
    [[noop], { concurrency: 2.5 }, /concurrency .* got 2.5/],
    [[noop], { concurrency: 100_001 }, /concurrency .* got 100001/],
    [[noop], { prefetch: -1 }, /prefetch must be an integer from 0 to 100000, got -1/],
    [[noop], { idleTimeout: 99 }, /idleTimeout must be an integer from 100 to 2147483647, got 99/],
    [[noop], { gracePeriod: -1 }, /gracePeriod must be an integer from 0 .* got -1/],
    [[noop], { maxDeliveries: 0 }, /maxDeliveries must be an integer from 1 .* got 0/],
    [[], {}, /^Cannot create worker: tasks must be a non-empty array, got \[\]$/],
    [[noop, noop], {}, /^Cannot create worker: two tasks are named noop$/],
    [[{ name: "x" }], {}, /is not a task; make one with task\(\)/],
    [[noop], { prefix: "a b" }, /^Cannot create queue: prefix must be/],
  ];
  for (const [tasks, options, message] of cases) {
    assert.throws(
      () => new Worker("q", tasks as never, { handleSignals: false, ...options }),
      (err: Error) => message.test(err.message),
      `${JSON.stringify(options)} should fail with ${message}`,
    );
  }
  // Edges that are allowed on purpose.
  new Worker("q", [noop], { prefetch: 0, gracePeriod: 0, maxDeliveries: Infinity });
});

Deno.test("a handler that blocks the event loop past idleTimeout runs once, not again and again", async () => {
  await using redis = await startRedis();
  let runs = 0;
  const hog = task("hog", async () => {
    runs++;
    const until = Date.now() + 700; // blocks the event loop: no renewal can run
    while (Date.now() < until) { /* busy */ }
    // Then async work, during which the worker's reclaim sees its own idle job.
    await new Promise((resolve) => setTimeout(resolve, 400));
    return runs;
  });
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new Worker("q", [hog], {
    redis: redis.url,
    idleTimeout: 200,
    handleSignals: false,
    logger: quiet,
  });
  const completed = next(worker, "completed");
  const run = worker.run();
  await queue.enqueue(hog, null);
  await completed;
  await using db = inspect(redis.url);
  await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 0, "settled");
  await worker.stop();
  await run;
  assert.equal(runs, 1);
  assert.equal(await db.xlen(queue.keys.dead), 0);
});

Deno.test("stop() returns even when Redis is gone, and leaves the job for a peer", async () => {
  await using redis = await startRedis({ persistence: "always" });
  const started = Promise.withResolvers<void>();
  const wait = task("wait", async (_: null, ctx) => {
    started.resolve();
    await new Promise((_, reject) => ctx.signal.addEventListener("abort", reject));
  });
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueue(wait, null, { id: "w" });
  const worker = new Worker("q", [wait], {
    redis: redis.url,
    gracePeriod: 0,
    handleSignals: false,
    logger: quiet,
  });
  const run = worker.run();
  await started.promise;
  await redis.kill();
  await worker.stop();
  await run;
  await redis.restart();
  await using db = inspect(redis.url);
  // The release could not reach Redis, so the job is still pending: a peer reclaims it.
  assert.equal(await pendingCount(db, queue.keys.stream), 1);
});

Deno.test("a stop right after start, while a reclaim runs, leaves no consumer and no job behind", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  await queue.enqueue("noop", null, { id: "orphan" });
  await db.xgroup("CREATE", queue.keys.stream, "sluice", "0");
  await db.xreadgroup("GROUP", "sluice", "ghost", "COUNT", 1, "STREAMS", queue.keys.stream, ">");
  // The ghost's delivery is long idle, so the first reclaim of any worker claims it.
  const [entry] = await db.xrange(queue.keys.stream, "-", "+");
  await db.call("XCLAIM", queue.keys.stream, "sluice", "ghost", "0", entry![0], "IDLE", "100000");
  const noop = task("noop", () => {});
  for (let i = 0; i < 5; i++) {
    const worker = new Worker("q", [noop], {
      redis: redis.url,
      handleSignals: false,
      logger: quiet,
    });
    const run = worker.run();
    await worker.stop();
    await run;
  }
  const consumers = await db.xinfo("CONSUMERS", queue.keys.stream, "sluice") as string[][];
  assert.deepEqual(consumers.map((c) => c[1]).filter((n) => n !== "ghost"), []);
  const pending = await db.xpending(queue.keys.stream, "sluice", "-", "+", 10) as unknown[][];
  assert.ok(pending.every((p) => p[1] === "ghost"), JSON.stringify(pending));
  const ids = (await db.xrange(queue.keys.stream, "-", "+")).map(([, f]) => f[f.indexOf("id") + 1]);
  assert.deepEqual(ids, ["orphan"], "the job is still there, once");
});

/**
 * Worker metrics in one process: every outcome counted with its labels, the Prometheus text
 * served over real HTTP, the queue's counts read at most once per interval, and every option
 * edge.
 */
import assert from "node:assert/strict";
import { NonRetryableError, Queue, task, type TaskContext, Worker } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { freePort } from "../src/testing/_process.ts";
import { inspect, parseMetrics } from "./_helpers.ts";
import { delay } from "../src/async.ts";

const quiet = { warn() {}, error() {} };

/** Runs `worker` until `done()` holds after an event, then stops it. */
async function runUntilCounted(worker: Worker, done: () => boolean): Promise<void> {
  const check = () => {
    if (done()) worker.stop();
  };
  for (const type of ["completed", "retrying", "dead", "cancelled", "rateLimited"]) {
    worker.addEventListener(type, check);
  }
  await worker.run();
}

Deno.test("worker.metrics() counts every outcome, by task, priority and group", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, priorities: ["low", "high"] });
  let flaky = 0;
  const tasks = [
    task("ok", () => "done"),
    task("flaky", () => {
      if (++flaky === 1) throw new Error("once");
    }, { retry: { attempts: 2, backoff: { type: "fixed", delay: 1 } } }),
    task("broken", () => {
      throw new Error("always");
    }, { retry: { attempts: 2, backoff: { type: "fixed", delay: 1 } } }),
    task("refused", () => {
      throw new NonRetryableError("no");
    }),
    task("slow", (_: null, ctx: TaskContext) => delay(5_000, { signal: ctx.signal }), {
      timeout: 20,
      retry: { attempts: 1 },
    }),
  ];
  await queue.enqueueMany("ok", [{ data: 1 }, { data: 2 }, { data: 3, priority: "high" }]);
  await queue.enqueue("ok", 4, { group: "tenant-a" });
  for (const name of ["flaky", "broken", "refused", "slow", "nobody"]) {
    await queue.enqueue(name, null);
  }
  const worker = new Worker("q", tasks, {
    redis: redis.url,
    priorities: ["low", "high"],
    concurrency: 4,
    metrics: {},
    handleSignals: false,
    logger: quiet,
  });
  assert.deepEqual(worker.metrics().jobs, [], "nothing counted before the run");
  const total = () =>
    worker.metrics().jobs.reduce(
      (n, j) => n + j.completed + Object.values(j.dead).reduce((a, b) => a + b, 0),
      0,
    );
  await runUntilCounted(worker, () => total() === 9);
  const m = worker.metrics();
  assert.equal(m.queue, "q");
  assert.equal(m.running, 0);
  const by = (taskName: string, extra: { priority?: string; group?: string } = {}) => {
    const found = m.jobs.find((j) =>
      j.task === taskName && j.priority === extra.priority && j.group === extra.group
    );
    assert.ok(found, `a series for ${taskName} ${JSON.stringify(extra)}`);
    return found;
  };
  assert.equal(by("ok", { priority: "low" }).completed, 2);
  assert.equal(by("ok", { priority: "high" }).completed, 1);
  assert.equal(by("ok", { priority: "low", group: "tenant-a" }).completed, 1);
  assert.deepEqual([
    by("flaky", { priority: "low" }).retried,
    by("flaky", { priority: "low" }).completed,
  ], [1, 1]);
  const broken = by("broken", { priority: "low" });
  assert.deepEqual([broken.retried, broken.dead], [1, { failed: 1 }]);
  assert.deepEqual(by("refused", { priority: "low" }).dead, { "non-retryable": 1 });
  const slow = by("slow", { priority: "low" });
  assert.deepEqual([slow.timedOut, slow.dead], [1, { timeout: 1 }]);
  assert.deepEqual(by("nobody", { priority: "low" }).dead, { "unknown-task": 1 });
  // Run times for every handler that started: each one's outcome observed once.
  assert.equal(by("broken", { priority: "low" }).runSeconds.count, 2);
  assert.ok(slow.runSeconds.sum >= 0.015, `slow ran ${slow.runSeconds.sum} s`);
  // Pickup for every start; a job that never started (unknown task) has none.
  assert.equal(by("ok", { priority: "low" }).pickupSeconds.count, 2);
  assert.equal(by("nobody", { priority: "low" }).pickupSeconds.count, 0);
  const ok = by("ok", { priority: "low" }).runSeconds;
  assert.equal(ok.counts.length, ok.bounds.length + 1);
  assert.equal(ok.counts.reduce((a, b) => a + b, 0), ok.count);
});

Deno.test("/metrics, /healthz and /readyz answer over HTTP in the Prometheus text format", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  // A group name that needs escaping in a label.
  const group = 'a "quoted"\\group';
  await queue.enqueueMany("t", [{ data: 1 }, { data: 2, group }]);
  await queue.enqueue("t", 3, { delay: 3_600_000 });
  const port = freePort();
  const worker = new Worker("q", [task("t", () => {})], {
    redis: redis.url,
    metrics: { port },
    handleSignals: false,
    logger: quiet,
  });
  assert.equal(worker.metricsAddress, undefined, "nothing listens before run()");
  const base = `http://127.0.0.1:${port}`;
  const run = worker.run();
  try {
    let ready: Response;
    for (;;) {
      ready = await fetch(`${base}/readyz`);
      if (ready.status === 200) break;
      assert.equal(ready.status, 503);
      assert.match(await ready.text(), /^not ready: /);
      await delay(10);
    }
    assert.equal(await ready.text(), "ready\n");
    assert.deepEqual(worker.metricsAddress, { hostname: "127.0.0.1", port });
    const health = await fetch(`${base}/healthz`);
    assert.deepEqual([health.status, await health.text()], [200, "ok\n"]);
    const missing = await fetch(`${base}/nope`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const post = await fetch(`${base}/metrics`, { method: "POST" });
    assert.equal(post.status, 405);
    await post.body?.cancel();
    while (worker.metrics().jobs.reduce((n, j) => n + j.completed, 0) < 2) await delay(5);
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const text = await res.text();
    assert.match(text, /^# HELP sluice_jobs_completed_total /m);
    assert.match(text, /^# TYPE sluice_job_run_seconds histogram$/m);
    const values = parseMetrics(text);
    assert.equal(values.get('sluice_jobs_completed_total{queue="q",task="t"}'), 1);
    // The group label escaped: \\ and \" inside the quotes.
    assert.equal(
      values.get('sluice_jobs_completed_total{queue="q",task="t",group="a \\"quoted\\"\\\\group"}'),
      1,
      text,
    );
    assert.equal(values.get('sluice_job_run_seconds_count{queue="q",task="t"}'), 1);
    assert.equal(values.get('sluice_job_run_seconds_bucket{queue="q",task="t",le="+Inf"}'), 1);
    assert.equal(values.get('sluice_job_pickup_seconds_count{queue="q",task="t"}'), 1);
    assert.equal(values.get('sluice_queue_jobs{queue="q",state="delayed"}'), 1);
    assert.equal(values.get('sluice_queue_jobs{queue="q",state="waiting"}'), 0);
    assert.equal(values.get('sluice_worker_running_jobs{queue="q"}'), 0);
    assert.equal(values.get('sluice_queue_workers{queue="q"}'), 1);
  } finally {
    await worker.stop();
    await run;
  }
  // Once run() has resolved, nothing listens.
  await assert.rejects(fetch(`${base}/healthz`));
  assert.equal(worker.metricsAddress, undefined);
});

Deno.test("the queue's counts are read from Redis at most once per queueInterval, however often scraped", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueue("t", 1, { delay: 3_600_000 });
  const port = freePort();
  const worker = new Worker("q", [task("t", () => {})], {
    redis: redis.url,
    metrics: { port, queueInterval: 3_600_000 },
    handleSignals: false,
    logger: quiet,
  });
  const run = worker.run();
  await using db = inspect(redis.url);
  const zcards = async () => {
    const stats = await db.info("commandstats");
    return Number(stats.match(/^cmdstat_zcard:calls=(\d+)/m)?.[1] ?? 0);
  };
  try {
    while ((await fetch(`http://127.0.0.1:${port}/readyz`)).status !== 200) await delay(10);
    const before = await zcards();
    for (let i = 0; i < 5; i++) {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.equal(parseMetrics(text).get('sluice_queue_jobs{queue="q",state="delayed"}'), 1);
    }
    // One read (one ZCARD of the delayed jobs) for five scrapes.
    assert.equal(await zcards() - before, 1);
    const { queueStats } = worker.metrics();
    assert.equal(queueStats?.delayed, 1);
    assert.ok(queueStats!.readAt <= Date.now());
  } finally {
    await worker.stop();
    await run;
  }
});

Deno.test("metrics option edges: each gets its own error naming the option and the value", async () => {
  const make = (metrics: unknown) =>
    new Worker("q", [task("t", () => {})], {
      // deno-lint-ignore no-explicit-any
      metrics: metrics as any,
      handleSignals: false,
    });
  assert.throws(() => make(9464), {
    name: "TypeError",
    message: "Cannot create worker: metrics must be an object such as { port: 9464 }, got 9464",
  });
  assert.throws(() => make(null), /metrics must be an object/);
  for (const port of [-1, 65_536, 1.5, "9464", NaN]) {
    assert.throws(() => make({ port }), /metrics\.port/, String(port));
  }
  assert.throws(() => make({ hostname: "" }), {
    name: "TypeError",
    message: 'Cannot create worker: metrics.hostname must be a non-empty string, got ""',
  });
  for (const queueInterval of [0, 99, -5, 1e15, Infinity]) {
    assert.throws(() => make({ queueInterval }), /metrics\.queueInterval/, String(queueInterval));
  }
  // Edges that are allowed: any free port, the lowest interval.
  make({ port: 0, queueInterval: 100 });
  const off = new Worker("q", [task("t", () => {})], { handleSignals: false });
  assert.throws(() => off.metrics(), {
    name: "TypeError",
    message:
      "Cannot read the metrics of worker q: the metrics option is off; pass metrics: {} (or { port }) to count",
  });
  assert.equal(off.metricsAddress, undefined);
  // A port taken: run() rejects at once, naming the address.
  await using redis = await startRedis();
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const worker = new Worker("q", [task("t", () => {})], {
      redis: redis.url,
      metrics: { port: (taken.addr as Deno.NetAddr).port },
      handleSignals: false,
      logger: quiet,
    });
    await assert.rejects(worker.run(), (err: Error) => {
      assert.match(
        err.message,
        new RegExp(
          `^Cannot run worker q: cannot serve metrics on 127\\.0\\.0\\.1:${
            (taken.addr as Deno.NetAddr).port
          }: `,
        ),
      );
      return true;
    });
  } finally {
    taken.close();
  }
});

Deno.test("past 1,000 label sets, new groups count together as _other, and the worker runs on", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const n = 1_003;
  await queue.enqueueMany("t", Array.from({ length: n }, (_, i) => ({ data: i, group: `g${i}` })));
  const worker = new Worker("q", [task("t", () => {})], {
    redis: redis.url,
    concurrency: 16,
    metrics: {},
    handleSignals: false,
    logger: quiet,
  });
  let done = 0;
  worker.addEventListener("completed", () => ++done === n && worker.stop());
  await worker.run();
  const { jobs } = worker.metrics();
  assert.equal(jobs.length, 1_001, "1,000 label sets, then one for the rest");
  const other = jobs.find((j) => j.group === "_other");
  assert.equal(other?.completed, 3);
  assert.equal(jobs.reduce((sum, j) => sum + j.completed, 0), n);
});

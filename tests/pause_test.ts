/**
 * Pause and resume: across worker processes (no start later than 1 s after pause() resolved,
 * nothing lost after the resume), from another process, a worker started while paused, the
 * job stream, a pause message lost to a reconnect, and on Redis Cluster.
 */
import assert from "node:assert/strict";
import { Queue, type QueueOptions, task, Worker } from "../mod.ts";
import { startCluster, startRedis } from "../src/testing.ts";
import { inspect, waitForRedis, type WorkerEvent, WorkerProcess } from "./_helpers.ts";

/** The promise the issue makes: no start later than this after pause() resolved. */
const WITHIN_MS = 1_000;

/**
 * Enqueues a delayed "sleep" job and waits until it is promoted: proof that delayed promotion
 * goes on while paused, and a wait on Redis state (not the clock) that ends `delay` ms on.
 */
async function promoted(queue: Queue, id: string, delay: number): Promise<void> {
  const handle = await queue.enqueue("sleep", { ms: 1 }, { id, delay });
  await waitForRedis(
    async () => (await handle.info())?.state === "waiting",
    `${id} promoted`,
    delay + 10_000,
  );
}

function startsAfter(events: WorkerEvent[], at: number): WorkerEvent[] {
  return events.filter((e) => e.ev === "started" && (e.at as number) > at);
}

Deno.test("two worker processes: no start later than 1 s after pause(); resume() finishes the rest, none lost", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const options = { concurrency: 2, prefetch: 4 };
  await using a = new WorkerProcess(redis.url, options);
  await using b = new WorkerProcess(redis.url, options);
  await Promise.all([a, b].map((w) => w.waitFor((e) => e.ev === "ready", "ready")));
  const n = 500;
  const ids = new Set(
    (await queue.enqueueMany("sleep", Array.from({ length: n }, () => ({ data: { ms: 20 } }))))
      .map((h) => h.id),
  );
  const completed = () => a.count("completed") + b.count("completed");
  await waitForRedis(() => Promise.resolve(completed() >= 40), "40 completed");
  assert.equal(await queue.pause(), true);
  const pausedAt = Date.now();
  assert.equal(await queue.isPaused(), true);
  assert.equal((await queue.stats()).paused, true);
  // 1.5 s of Redis time later, a delayed job is promoted: the queue is still paused.
  await promoted(queue, "marker", 1_500);
  const late = [
    ...startsAfter(a.events, pausedAt + WITHIN_MS),
    ...startsAfter(b.events, pausedAt + WITHIN_MS),
  ];
  assert.deepEqual(late, [], "no start more than 1 s after pause() resolved");
  const startedWhilePaused = new Set(
    [...a.events, ...b.events].filter((e) => e.ev === "started").map((e) => e.id),
  );
  assert.ok(startedWhilePaused.size < n, "jobs were left when the queue paused");
  assert.ok(!startedWhilePaused.has("marker"), "the promoted job waits too");
  const stats = await queue.stats();
  assert.ok(stats.waiting + stats.active > 0 && stats.paused);

  assert.equal(await queue.resume(), true);
  assert.equal((await queue.stats()).paused, false);
  ids.add("marker");
  await waitForRedis(
    () => Promise.resolve(completed() >= ids.size),
    `${ids.size} completed`,
    30_000,
  );
  const done = new Set(
    [...a.events, ...b.events].filter((e) => e.ev === "completed").map((e) => e.id),
  );
  const lost = [...ids].filter((id) => !done.has(id));
  assert.deepEqual(lost, [], "lost = 0");
  assert.equal(a.count("dead") + b.count("dead") + a.count("retrying") + b.count("retrying"), 0);
  // No attempt was charged for the pause: every job ran once, on its first attempt.
  assert.ok(
    [...a.events, ...b.events].every((e) => e.ev !== "started" || e.attempt === 1),
    "no attempt charged",
  );
});

/** Runs `code` in another Deno process, with `Queue` imported and `url` defined. */
async function elsewhere(url: string, code: string): Promise<string> {
  const mod = new URL("../mod.ts", import.meta.url).href;
  const script = `import { Queue } from ${JSON.stringify(mod)};
const url = ${JSON.stringify(url)};
${code}`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
  return text;
}

Deno.test("pause, resume and isPaused from another process", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const pauseThere = `await using queue = new Queue("q", { redis: url });
console.log(await queue.pause(), await queue.isPaused());`;
  assert.equal(await elsewhere(redis.url, pauseThere), "true true");
  assert.equal(await queue.isPaused(), true);
  assert.equal(await queue.pause(), false, "already paused");
  const resumeThere = `await using queue = new Queue("q", { redis: url });
console.log(await queue.resume(), await queue.isPaused());`;
  assert.equal(await elsewhere(redis.url, resumeThere), "true false");
  assert.equal(await queue.isPaused(), false);
  assert.equal(await queue.resume(), false, "already running");
});

Deno.test("a worker started while the queue is paused takes nothing until resume(); enqueue and promotion go on", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.pause();
  const handles = await queue.enqueueMany("sleep", [1, 2, 3].map(() => ({ data: { ms: 1 } })));
  await using worker = new WorkerProcess(redis.url, { concurrency: 2, prefetch: 2 });
  await worker.waitFor((e) => e.ev === "ready", "ready");
  await waitForRedis(async () => (await queue.stats()).workers === 1, "a heartbeat");
  // The worker's own loop promotes this one: it runs, and still starts nothing.
  await promoted(queue, "marker", 1_000);
  const stats = await queue.stats();
  assert.equal(worker.count("started"), 0, worker.log());
  assert.equal(stats.active, 0, "nothing was even read");
  assert.equal(stats.waiting, 4);
  assert.equal(stats.paused, true);
  await queue.resume();
  await worker.waitForCount("completed", 4);
  for (const h of handles) assert.equal((await h.info())?.state, "completed");
});

Deno.test("queue.consume() delivers nothing new while paused, and goes on after resume()", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueueMany("t", [1, 2, 3, 4].map((n) => ({ data: n })));
  const controller = new AbortController();
  const got: number[] = [];
  const first = Promise.withResolvers<void>();
  const all = Promise.withResolvers<void>();
  const reading = (async () => {
    for await (const job of queue.consume({ signal: controller.signal, prefetch: 1 })) {
      got.push(job.data as number);
      if (got.length === 1) {
        await queue.pause();
        first.resolve();
      }
      await job.ack();
      if (got.length === 4) all.resolve();
    }
  })();
  await first.promise;
  await promoted(queue, "marker", 1_000);
  assert.deepEqual(got, [1], "nothing delivered while paused");
  await queue.resume();
  await all.promise;
  assert.deepEqual(got, [1, 2, 3, 4]);
  controller.abort();
  await reading;
});

/**
 * An in-process worker at concurrency 2 runs 400 jobs of 10 ms on `queue`; after 10, `pause()`
 * (which may first break something) pauses the queue. No job starts more than WITHIN_MS after
 * it resolved, jobs are left, and once `resume()` resolves every job (and the promoted marker)
 * completes.
 */
async function pauseMidRun(
  queue: Queue,
  redis: NonNullable<QueueOptions["redis"]>,
  pause: () => Promise<unknown>,
  resume: () => Promise<unknown>,
): Promise<void> {
  const starts: number[] = [];
  const sleep = task("sleep", async (data: { ms: number }) => {
    starts.push(Date.now());
    await new Promise((resolve) => setTimeout(resolve, data.ms));
  });
  const worker = new Worker(queue.name, [sleep], {
    redis,
    concurrency: 2,
    prefetch: 2,
    handleSignals: false,
  });
  let completed = 0;
  worker.addEventListener("completed", () => completed++);
  const run = worker.run();
  try {
    await queue.enqueueMany(sleep, Array.from({ length: 400 }, () => ({ data: { ms: 10 } })));
    await waitForRedis(() => Promise.resolve(completed >= 10), "10 completed");
    await pause();
    const pausedAt = Date.now();
    await promoted(queue, "marker", 1_500);
    assert.deepEqual(starts.filter((at) => at > pausedAt + WITHIN_MS), []);
    assert.ok(completed < 400, "jobs were left when the queue paused");
    await resume();
    await waitForRedis(() => Promise.resolve(completed === 401), "401 completed", 30_000);
  } finally {
    await worker.stop();
    await run;
  }
}

Deno.test("a pause whose message is lost to a subscriber reconnect still stops every start within 1 s", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  await pauseMidRun(queue, redis.url, async () => {
    // The subscriber connection is cut, then the pause is published while it is away.
    const killed = Number(await db.call("CLIENT", "KILL", "TYPE", "pubsub"));
    assert.ok(killed >= 1);
    await queue.pause();
  }, () => queue.resume());
});

Deno.test("pause() and resume() on a closed queue reject with the closed-queue error", async () => {
  const queue = new Queue("q", { redis: "redis://127.0.0.1:1" });
  await queue.close();
  await assert.rejects(queue.pause(), {
    name: "TypeError",
    message: /Cannot pause: queue q is closed/,
  });
  await assert.rejects(queue.resume(), {
    name: "TypeError",
    message: /Cannot resume: queue q is closed/,
  });
  await assert.rejects(queue.isPaused(), TypeError);
});

Deno.test("Redis Cluster: pause and resume over sharded pub/sub", async () => {
  await using cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
  const redis = { cluster: [...cluster.urls] };
  await using queue = new Queue("cq", { redis });
  await pauseMidRun(queue, redis, async () => {
    assert.equal(await queue.pause(), true);
  }, async () => {
    assert.equal((await queue.stats()).paused, true);
    assert.equal(await queue.resume(), true);
    assert.equal(await queue.isPaused(), false);
  });
});

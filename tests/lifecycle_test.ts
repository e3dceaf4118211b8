/** Results, status, cancellation, dedup, dead letters, stats and hygiene. */
import assert from "node:assert/strict";
import { CancelledError, NonRetryableError, Queue, SluiceError, task, Worker } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { countEvents, inspect, pendingCount, waitForRedis, WorkerProcess } from "./_helpers.ts";

const quiet = { info() {}, warn() {}, error() {} };
const workerOptions = (url: string, more: Record<string, unknown> = {}) => ({
  redis: url,
  handleSignals: false,
  logger: quiet,
  ...more,
});
const double = task("double", (n: number) => 2 * n);
const boom = task("boom", () => {
  throw new NonRetryableError("kaboom");
});

Deno.test("result() resolves with the typed result, also for a job that finished before", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new Worker("q", [double], workerOptions(redis.url));
  const run = worker.run();
  const handle = await queue.enqueue(double, 21);
  const result: number = await handle.result();
  assert.equal(result, 42);
  // Again, long after it finished: read from the record.
  assert.equal(await queue.job<number>(handle.id).result(), 42);
  await worker.stop();
  await run;
});

Deno.test("result() can be awaited in another process", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueue(double, 5, { id: "x", delay: 300 });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./fault/_result.ts", import.meta.url).pathname,
      "--redis",
      redis.url,
      "--queue",
      "q",
      "--id",
      "x",
    ],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  await using worker = new Worker("q", [double], workerOptions(redis.url));
  const run = worker.run();
  const out = await child;
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.at(-1), { result: 10 }, new TextDecoder().decode(out.stderr));
  await worker.stop();
  await run;
});

Deno.test("result() rejects with the stored error for a dead job, CancelledError for a cancelled one", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const dead = await queue.enqueue(boom, null);
  const later = await queue.enqueue(double, 1, { delay: 60_000 });
  await using worker = new Worker("q", [boom, double], workerOptions(redis.url));
  const run = worker.run();
  await assert.rejects(dead.result(), (err: Error) => {
    assert.ok(err instanceof SluiceError);
    assert.match(
      err.message,
      /went to the dead letters \(non-retryable\): NonRetryableError: kaboom/,
    );
    return true;
  });
  assert.deepEqual(await later.cancel(), { cancelled: true, state: "delayed" });
  await assert.rejects(later.result(), CancelledError);
  await assert.rejects(queue.job("nope").result(), /no such job/);
  const controller = new AbortController();
  const waiting = queue.job("never").result({ signal: controller.signal });
  controller.abort(new Error("gave up"));
  await assert.rejects(waiting, /no such job|gave up/);
  await worker.stop();
  await run;
});

Deno.test("a waiter gets the result even with keepResult 0, and no record is left", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const handle = await queue.enqueue(double, 4);
  const result = handle.result();
  await using worker = new Worker("q", [double], workerOptions(redis.url, { keepResult: 0 }));
  const run = worker.run();
  assert.equal(await result, 8);
  assert.equal(await db.exists(queue.keys.job(handle.id)), 0);
  assert.equal(await handle.info(), undefined);
  await worker.stop();
  await run;
});

Deno.test("info() follows a job: waiting, active, completed, with its timestamps and worker", async () => {
  await using redis = await startRedis();
  const gate = Promise.withResolvers<void>();
  const started = Promise.withResolvers<void>();
  const slow = task("slow", async () => {
    started.resolve();
    await gate.promise;
    return "ok";
  });
  await using queue = new Queue("q", { redis: redis.url });
  const handle = await queue.enqueue(slow, null, { id: "s" });
  const waiting = await handle.info();
  assert.equal(waiting?.state, "waiting");
  assert.equal(waiting?.task, "slow");
  assert.equal(waiting?.attempt, 1);
  assert.ok(waiting!.enqueuedAt! <= Date.now());
  await using worker = new Worker("q", [slow], workerOptions(redis.url));
  const run = worker.run();
  await started.promise;
  const active = await handle.info();
  assert.equal(active?.state, "active");
  assert.equal(active?.worker, worker.consumer);
  assert.equal(active?.deliveries, 1);
  gate.resolve();
  await handle.result();
  const done = await handle.info();
  assert.equal(done?.state, "completed");
  assert.ok(done!.startedAt! >= done!.enqueuedAt! && done!.finishedAt! >= done!.startedAt!);
  assert.equal(done?.worker, worker.consumer);
  const delayed = await queue.enqueue(slow, null, { delay: 60_000 });
  const d = await delayed.info();
  assert.equal(d?.state, "delayed");
  assert.equal(d?.dueAt, delayed.dueAt);
  assert.equal(await queue.job("unknown").info(), undefined);
  await worker.stop();
  await run;
});

Deno.test("info() reads task, attempt and enqueue time from a record of either layout: field job, or fields of their own", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  const handle = await queue.enqueue(double, 1, { id: "new" });
  const later = await queue.enqueue(double, 1, { id: "later", delay: 60_000 });
  // Field job: "<enq ms> <task>".
  const enqOf = async (id: string) =>
    Number((await db.hget(queue.keys.job(id), "job"))?.split(" ")[0]);
  const enq = await enqOf("new");
  const waiting = { id: "new", state: "waiting", task: "double", attempt: 1, enqueuedAt: enq };
  assert.deepEqual(await handle.info(), waiting);
  assert.deepEqual(await later.info(), {
    ...waiting,
    id: "later",
    state: "delayed",
    enqueuedAt: await enqOf("later"),
    dueAt: later.dueAt,
  });
  // A record as enqueues before field job wrote it.
  await db.hset(queue.keys.job("old"), {
    state: "waiting",
    task: "double",
    attempt: "1",
    enq: String(enq),
    entry: handle.entryId!,
  });
  assert.deepEqual(await queue.job("old").info(), { ...waiting, id: "old" });
  // A retry's attempt wins over field job's implied 1.
  await db.hset(queue.keys.job("new"), "attempt", "3");
  assert.deepEqual(await handle.info(), { ...waiting, attempt: 3 });
});

Deno.test("info() shows a retrying job's error and due time, and a dead job's reason", async () => {
  await using redis = await startRedis();
  const flaky = task("flaky", () => {
    throw new Error("try later");
  }, { retry: { attempts: 2, backoff: { type: "fixed", delay: 60_000 } } });
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new Worker("q", [flaky, boom], workerOptions(redis.url));
  const retrying = new Promise((resolve) => worker.addEventListener("retrying", resolve));
  const run = worker.run();
  const handle = await queue.enqueue(flaky, null);
  await retrying;
  const r = await handle.info();
  assert.equal(r?.state, "retrying");
  assert.equal(r?.attempt, 2);
  assert.match(r!.error!, /try later/);
  assert.ok(r!.dueAt! > Date.now() + 50_000);
  const dead = await queue.enqueue(boom, null);
  await assert.rejects(dead.result());
  const d = await dead.info();
  assert.equal(d?.state, "dead");
  assert.equal(d?.reason, "non-retryable");
  await worker.stop();
  await run;
});

Deno.test("cancel(): a waiting job is never run, a finished one is left as it is", async () => {
  await using redis = await startRedis();
  let runs = 0;
  const count = task("count", () => ++runs);
  await using queue = new Queue("q", { redis: redis.url });
  const waiting = await queue.enqueue(count, null, { id: "w" });
  assert.deepEqual(await waiting.cancel(), { cancelled: true, state: "waiting" });
  assert.equal((await waiting.info())?.state, "cancelled");
  const after = await queue.enqueue(count, null, { id: "a" });
  await using worker = new Worker("q", [count], workerOptions(redis.url));
  const run = worker.run();
  await after.result();
  assert.equal(runs, 1, "only the job that was not cancelled ran");
  assert.deepEqual(await after.cancel(), { cancelled: false, state: "completed" });
  assert.deepEqual(await queue.job("ghost").cancel(), { cancelled: false, state: "unknown" });
  await worker.stop();
  await run;
});

Deno.test("cancel() from this process stops a job running in a worker process", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using w = new WorkerProcess(redis.url, { concurrency: 2 });
  const handle = await queue.enqueue("sleep", { ms: 60_000 }, { id: "long" });
  await w.waitFor((e) => e.ev === "started" && e.id === "long", "started");
  assert.deepEqual(await handle.cancel(), { cancelled: true, state: "active" });
  const aborted = await w.waitFor((e) => e.ev === "aborted" && e.id === "long", "aborted");
  assert.equal(aborted.reason, "CancelledError");
  await w.waitFor((e) => e.ev === "cancelled" && e.id === "long", "cancelled event");
  await assert.rejects(handle.result(), CancelledError);
  assert.equal((await handle.info())?.state, "cancelled");
  await using db = inspect(redis.url);
  assert.equal(await pendingCount(db, queue.keys.stream), 0);
  assert.equal(w.count("dead") + w.count("retrying"), 0);
});

Deno.test("enqueue with a known id writes nothing and returns the existing job", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const first = await queue.enqueue(double, 1, { id: "once" });
  const second = await queue.enqueue(double, 2, { id: "once" });
  assert.equal(first.duplicate, false);
  assert.equal(second.duplicate, true);
  assert.equal(second.entryId, first.entryId);
  assert.equal(await db.xlen(queue.keys.stream), 1);
  const many = await queue.enqueueMany(double, [{ id: "once", data: 3 }, { id: "fresh", data: 4 }]);
  assert.deepEqual(many.map((h) => h.duplicate), [true, false]);
  // With keepResult 0 the id is free again as soon as the job ends.
  await using worker = new Worker("q", [double], workerOptions(redis.url, { keepResult: 0 }));
  const run = worker.run();
  assert.equal(await first.result(), 2);
  await waitForRedis(async () => (await db.exists(queue.keys.job("once"))) === 0, "record gone");
  const again = await queue.enqueue(double, 5, { id: "once" });
  assert.equal(again.duplicate, false);
  await worker.stop();
  await run;
});

Deno.test("dead letters: count, list by page, replay once however often asked, purge", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new Worker("q", [boom], workerOptions(redis.url));
  const run = worker.run();
  const handles = await queue.enqueueMany(
    boom,
    [1, 2, 3, 4, 5].map((n) => ({ id: `b${n}`, data: n })),
  );
  for (const h of handles) await assert.rejects(h.result());
  await worker.stop();
  await run;
  assert.equal(await queue.dead.count(), 5);
  const page1 = await queue.dead.list({ limit: 2 });
  const page2 = await queue.dead.list({ limit: 2, after: page1.at(-1)!.deadId });
  const page3 = await queue.dead.list({ limit: 2, after: page2.at(-1)!.deadId });
  assert.deepEqual([...page1, ...page2, ...page3].map((d) => d.id).sort(), [
    "b1",
    "b2",
    "b3",
    "b4",
    "b5",
  ]);
  assert.equal(page1[0]!.reason, "non-retryable");
  assert.match(page1[0]!.error, /kaboom/);
  assert.equal(page1[0]!.task, "boom");
  // Two replays of the same letters race over two connections: each letter is replayed once.
  const target = page1.map((d) => d.deadId);
  await using other = new Queue("q", { redis: redis.url });
  const [x, y] = await Promise.all([queue.dead.replay(target), other.dead.replay(target)]);
  assert.equal(x + y, 2);
  await using db = inspect(redis.url);
  assert.equal(await db.xlen(queue.keys.stream), 2);
  const replayed = await queue.job(page1[0]!.id).info();
  assert.equal(replayed?.state, "waiting");
  assert.equal(replayed?.attempt, 1);
  assert.equal(await queue.dead.purge([page2[0]!.deadId]), 1);
  assert.equal(await queue.dead.purge({ all: true }), 2);
  assert.equal(await queue.dead.count(), 0);
  await assert.rejects(queue.dead.replay(["nope"]), /is not a deadId/);
  await assert.rejects(queue.dead.list({ limit: 0 }), /limit must be an integer from 1/);
});

Deno.test("maxDead keeps only the newest dead letters", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new Worker("q", [boom], workerOptions(redis.url, { maxDead: 3 }));
  const run = worker.run();
  const handles = await queue.enqueueMany(boom, Array.from({ length: 6 }, (_, i) => ({ data: i })));
  for (const h of handles) await assert.rejects(h.result());
  await worker.stop();
  await run;
  assert.equal(await queue.dead.count(), 3);
});

Deno.test("stats() counts waiting, active, delayed and dead jobs, and consumers", async () => {
  await using redis = await startRedis();
  const gate = Promise.withResolvers<void>();
  const hold = task("hold", () => gate.promise);
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueueMany(hold, Array.from({ length: 5 }, () => ({ data: null })));
  await queue.enqueue(hold, null, { delay: 60_000 });
  const empty = await queue.stats();
  assert.equal(empty.waiting, 5);
  assert.equal(empty.delayed, 1);
  assert.ok(empty.oldestWaitingMs !== null && empty.oldestWaitingMs >= 0);
  await using worker = new Worker("q", [hold], workerOptions(redis.url, { prefetch: 0 }));
  const run = worker.run();
  await using db = inspect(redis.url);
  await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 1, "one active");
  const busy = await queue.stats();
  assert.deepEqual(
    [busy.waiting, busy.active, busy.delayed, busy.dead, busy.consumers, busy.workers],
    [4, 1, 1, 0, 1, 1],
  );
  gate.resolve();
  await worker.stop();
  await run;
});

Deno.test("after 100k jobs with keepResult 0, Redis holds no per-job keys and the stream is empty", async () => {
  await using redis = await startRedis();
  const noop = task("noop", () => {});
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const n = 100_000;
  for (let i = 0; i < n; i += 20_000) {
    await queue.enqueueMany(noop, Array.from({ length: 20_000 }, () => ({ data: null })));
  }
  const worker = new Worker(
    "q",
    [noop],
    workerOptions(redis.url, { keepResult: 0, concurrency: 64 }),
  );
  let done = 0;
  const all = Promise.withResolvers<void>();
  worker.addEventListener("completed", () => ++done === n && all.resolve());
  const run = worker.run();
  await all.promise;
  await worker.stop();
  await run;
  assert.equal(await db.xlen(queue.keys.stream), 0);
  assert.equal(await pendingCount(db, queue.keys.stream), 0);
  const keys = (await db.keys("*")).sort();
  assert.deepEqual(
    keys,
    [queue.keys.events, queue.keys.minutes, queue.keys.stream],
    `left: ${keys.slice(0, 5).join(", ")}`,
  );
  assert.equal(
    await db.dbsize(),
    3,
    "the (empty) stream, which holds the group, the events and the per-minute counts",
  );
  // The per-minute counts hold a ring of at most 64 minutes: 3 fields each.
  assert.ok(await db.hlen(queue.keys.minutes) <= 3 * 64);
  const ring = await db.hgetall(queue.keys.minutes);
  const counted = Object.entries(ring).filter(([k]) => k.startsWith("c"))
    .reduce((sum, [, v]) => sum + Number(v), 0);
  assert.equal(counted, n, "every completion counted once");
  // The events stream is capped near 10,000 events, of the 300,000 written (approximately:
  // each entry trims to cap / its own count of entries).
  let events = 0;
  for (const [, fields] of await db.xrange(queue.keys.events, "-", "+")) {
    events += countEvents(fields);
  }
  assert.ok(events >= 2_000 && events < 12_000, `events kept: ${events}`);
});

Deno.test("a job cancelled while its worker was dead is not run by the peer that reclaims it", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using a = new WorkerProcess(redis.url, { idle: 500 });
  const handle = await queue.enqueue("sleep", { ms: 60_000 }, { id: "c" });
  await a.waitFor((e) => e.ev === "started" && e.id === "c", "started");
  a.signal("SIGKILL");
  await a.status;
  assert.deepEqual(await handle.cancel(), { cancelled: true, state: "active" });
  await using b = new WorkerProcess(redis.url, { idle: 500, "max-sleep": 10 });
  await b.waitFor((e) => e.ev === "cancelled" && e.id === "c", "cancelled on reclaim");
  assert.equal(b.count("completed", "c"), 0);
  await assert.rejects(handle.result(), CancelledError);
});

Deno.test("a delayed job cancelled after its promotion never runs", async () => {
  await using redis = await startRedis();
  let runs = 0;
  const count = task("count", () => ++runs);
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const handle = await queue.enqueue(count, null, { delay: 50 });
  // A stream consumer promotes it (and holds nothing): now it waits in the stream.
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal, prefetch: 1 }).getReader();
  const first = (await reader.read()).value!;
  assert.equal(first.id, handle.id);
  await first.release();
  controller.abort();
  reader.releaseLock();
  assert.equal((await handle.info())?.state, "waiting");
  assert.deepEqual(await handle.cancel(), { cancelled: true, state: "waiting" });
  await using worker = new Worker("q", [count], workerOptions(redis.url));
  const run = worker.run();
  await assert.rejects(handle.result(), CancelledError);
  await waitForRedis(async () => (await db.xlen(queue.keys.stream)) === 0, "drained");
  assert.equal(runs, 0);
  await worker.stop();
  await run;
});

Deno.test("jobs cancelled while their reads are in flight all end cancelled", async () => {
  await using redis = await startRedis();
  const slow = task("slow", async (_: null, ctx) => {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, 200);
      ctx.signal.addEventListener("abort", () => (clearTimeout(timer), reject(ctx.signal.reason)));
    });
  });
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new Worker("q", [slow], workerOptions(redis.url, { concurrency: 64 }));
  const run = worker.run();
  const handles = await queue.enqueueMany(slow, Array.from({ length: 50 }, () => ({ data: null })));
  await Promise.all(handles.map((h) => h.cancel()));
  for (const h of handles) await assert.rejects(h.result(), CancelledError);
  await worker.stop();
  await run;
});

Deno.test("a job cancelled while it waits for a slot never runs, and one cancelled while it runs ends cancelled even if its handler returns", async () => {
  await using redis = await startRedis();
  const ran: string[] = [];
  const started = Promise.withResolvers<void>(), release = Promise.withResolvers<void>();
  const aborted = Promise.withResolvers<void>();
  // Ignores its signal (the test only watches it): returns normally once released.
  const hold = task("hold", async (id: string, ctx) => {
    ran.push(id);
    if (id === "running") {
      ctx.signal.addEventListener("abort", () => aborted.resolve(), { once: true });
      started.resolve();
      await release.promise;
    }
    return id;
  });
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new Worker(
    "q",
    [hold],
    workerOptions(redis.url, { concurrency: 1, prefetch: 4 }),
  );
  const ends: string[] = [];
  for (const type of ["completed", "cancelled"] as const) {
    worker.addEventListener(type, (e) => ends.push(`${e.detail.job.id} ${type}`));
  }
  // Both read at once: the second waits in the worker for the one slot.
  const running = await queue.enqueue(hold, "running", { id: "running" });
  const queued = await queue.enqueue(hold, "queued", { id: "queued" });
  const run = worker.run();
  await started.promise;
  assert.equal((await queued.info())?.state, "active", "delivered, waiting for the slot");
  assert.equal((await queued.cancel()).cancelled, true);
  assert.equal((await running.cancel()).cancelled, true);
  // The worker heard both cancels (in order, on one channel) before the handler returns: a
  // running job that completes before its cancel is heard ends completed, by design.
  await aborted.promise;
  release.resolve();
  await assert.rejects(queued.result(), CancelledError);
  await assert.rejects(running.result(), CancelledError);
  assert.deepEqual(ran, ["running"], "the queued job never ran");
  await waitForRedis(() => Promise.resolve(ends.length === 2), "both ends reported");
  assert.deepEqual(ends.sort(), ["queued cancelled", "running cancelled"]);
  await worker.stop();
  await run;
});

Deno.test("two result() calls on one job both resolve", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const handle = await queue.enqueue(double, 21);
  const waits = [handle.result(), queue.job(handle.id).result()];
  await using worker = new Worker("q", [double], workerOptions(redis.url));
  const run = worker.run();
  assert.deepEqual(await Promise.all(waits), [42, 42]);
  await worker.stop();
  await run;
});

Deno.test("replay({ all: true }) replays the letters there when it starts, not ones that die again", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new Worker("q", [boom], workerOptions(redis.url, { concurrency: 8 }));
  const run = worker.run();
  const handles = await queue.enqueueMany(
    boom,
    Array.from({ length: 200 }, () => ({ data: null })),
  );
  for (const h of handles) await assert.rejects(h.result());
  assert.equal(await queue.dead.replay({ all: true }), 200);
  await worker.stop();
  await run;
});

Deno.test("a delayed job scheduled without a wake-up message still runs within a tick", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  await using worker = new Worker("q", [double], workerOptions(redis.url, { idleTimeout: 300 }));
  const done = new Promise<unknown>((resolve) =>
    worker.addEventListener("completed", (e) => resolve(e.detail.result))
  );
  const run = worker.run();
  // What a producer in another language might do: ZADD and HSET in one MULTI (as the README
  // says), and no PUBLISH.
  const fields = ["v", "1", "id", "raw", "task", "double", "data", "4", "attempt", "1", "enq", "1"];
  const [seconds] = await db.time();
  await db.multi()
    .hset(queue.keys.payloads, "raw", JSON.stringify(fields))
    .zadd(queue.keys.delayed, Number(seconds) * 1_000 + 50, "raw")
    .exec();
  assert.equal(await done, 8);
  await worker.stop();
  await run;
});

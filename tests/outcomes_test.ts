// How a job's end is announced: only while a result() waits (or a pattern subscription exists),
// and what a settle writes to the record.
import assert from "node:assert/strict";
import { type AnyTask, Queue, task, Worker } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { commandCalls, inspect, sharedRedis, waitForRedis } from "./_helpers.ts";
import { enqueueArgs, enqueueHead } from "../src/scripts/enqueue.ts";
import { WIRE_VERSION } from "../src/codec.ts";

const quiet = { info() {}, warn() {}, error() {} };

/** Runs `n` jobs of `t` on queue q with one worker, then stops it. */
async function drain(
  url: string,
  t: AnyTask,
  n: number,
  keepResult?: number,
  beforeStop?: () => Promise<void>,
) {
  let ended = 0;
  const all = Promise.withResolvers<void>();
  const worker = new Worker("q", [t], {
    redis: url,
    concurrency: 8,
    handleSignals: false,
    logger: quiet,
    ...(keepResult === undefined ? {} : { keepResult }),
  });
  const count = () => ++ended === n && all.resolve();
  worker.addEventListener("completed", count);
  worker.addEventListener("dead", count);
  const run = worker.run();
  await all.promise;
  await beforeStop?.();
  await worker.stop();
  await run;
}

Deno.test("with nobody awaiting a result, settles publish no outcome", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  const noop = task("noop", () => {});
  await queue.enqueueMany(noop, Array.from({ length: 200 }, () => ({ data: null })));
  const before = await commandCalls(db, "publish");
  await drain(redis.url, noop, 200);
  assert.equal(await commandCalls(db, "publish"), before);
  assert.equal(await db.exists(queue.keys.waiters), 0, "no waiter ever registered");
});

Deno.test("a result() waiter hears its job's outcome, with keepResult 0 too, and unregisters", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  const double = task("double", async (n: number) => {
    await gate.promise;
    return 2 * n;
  });
  const gate = Promise.withResolvers<void>();
  const handles = await queue.enqueueMany(double, [{ data: 1 }, { data: 2 }, { data: 3 }]);
  const results = handles.map((h) => h.result({ signal: AbortSignal.timeout(10_000) }));
  const worker = drain(redis.url, double, 3, 0);
  gate.resolve();
  assert.deepEqual(await Promise.all(results), [2, 4, 6]);
  await worker;
  assert.equal(await db.zcard(queue.keys.waiters), 0, "each waiter unregistered");
  // keepResult 0: nothing but the outcome messages told the waiters.
  assert.equal(await db.exists(queue.keys.job(handles[0]!.id)), 0);
});

Deno.test("a pattern subscriber still hears every outcome", async () => {
  await using redis = await startRedis();
  await using sub = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  const heard: string[] = [];
  sub.on("pmessage", (_p: string, channel: string) => heard.push(channel));
  await sub.psubscribe(`${queue.keys.done}*`);
  const noop = task("noop", () => {});
  const [handle] = await queue.enqueueMany(noop, [{ data: null }]);
  await drain(redis.url, noop, 1);
  // Published inside the settle, before the worker stopped: a PING on the subscriber's own
  // connection is answered after it.
  await sub.ping();
  assert.deepEqual(heard, [queue.keys.done + handle!.id]);
});

Deno.test("an ack keeps a retried job's record clean of its last error, and a first attempt needs no cleaning", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  let tries = 0;
  const flaky = task("flaky", () => {
    if (++tries === 1) throw new Error("first try fails");
    return "ok";
  }, { retry: { attempts: 2, backoff: { type: "fixed", delay: 0 } } });
  const handle = await queue.enqueue(flaky, null);
  await drain(redis.url, flaky, 1);
  const info = await handle.info();
  assert.equal(info?.state, "completed");
  assert.equal(info?.attempt, 2);
  assert.equal(info?.error, undefined, "the first attempt's error is gone");

  const noop = task("noop", () => {});
  await queue.enqueueMany(noop, Array.from({ length: 50 }, () => ({ data: null })));
  const hdel = await commandCalls(db, "hdel");
  // Counted before the worker stops: its stop deletes its heartbeat record (an HDEL).
  let acked = -1;
  await drain(redis.url, noop, 50, undefined, async () => {
    acked = await commandCalls(db, "hdel");
  });
  assert.equal(acked, hdel, "first attempts end with no HDEL");
});

Deno.test("a kept record of a handler that returned nothing holds no result field, and expires keepResult after its end", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  const maybe = task("maybe", (n: number) => n > 0 ? { n } : undefined);
  const [none, some] = await queue.enqueueMany(maybe, [{ data: 0 }, { data: 2 }]);
  const keep = 3_600_000;
  const before = Number((await db.time())[0]) * 1000;
  await drain(redis.url, maybe, 2, keep);
  const after = (Number((await db.time())[0]) + 1) * 1000;
  assert.equal(await db.hexists(queue.keys.job(none!.id), "result"), 0);
  assert.equal(await db.hget(queue.keys.job(some!.id), "result"), '{"n":2}');
  assert.equal(await none!.result(), undefined);
  assert.deepEqual(await some!.result(), { n: 2 });
  assert.equal((await queue.jobDetails(none!.id))?.result, undefined);
  assert.equal((await queue.jobDetails(some!.id))?.result, '{"n":2}');
  assert.equal((await none!.info())?.state, "completed");
  for (const h of [none!, some!]) {
    const at = await db.pexpiretime(queue.keys.job(h.id));
    assert.ok(at >= before + keep && at <= after + keep, `expires keepResult after its end: ${at}`);
  }
});

Deno.test("an enqueue of ids the producer made looks for one earlier record per call; given ids still dedup", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  const exists = await commandCalls(db, "exists");
  const made = await queue.enqueueMany("t", Array.from({ length: 100 }, () => ({ data: 1 })));
  assert.equal(await commandCalls(db, "exists"), exists + 1, "one EXISTS for the call's 100 ids");
  assert.equal(new Set(made.map((h) => h.id)).size, 100);
  assert.ok(made.every((h) => !h.duplicate));
  const first = await queue.enqueue("t", 1, { id: "given" });
  const again = await queue.enqueue("t", 2, { id: "given" });
  assert.deepEqual([first.duplicate, again.duplicate], [false, true]);
  assert.equal(again.entryId, first.entryId);
  assert.equal(await db.xlen(queue.keys.stream), 101);
});

Deno.test("an enqueue call of made ids that runs twice (a resend after a lost reply) writes its jobs once", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using shared = sharedRedis(redis.url);
  const { keys } = new Queue("q", { redis: redis.url });
  const head = enqueueHead(keys, "t", Date.now(), WIRE_VERSION);
  const jobs = ["a", "b", "c"].map((id) => ({
    id,
    data: "1",
    when: undefined,
    extras: undefined,
    made: true,
  }));
  const args = enqueueArgs(keys, keys.stream, head, jobs, 0, jobs.length);
  assert.equal(args[args.indexOf(WIRE_VERSION) + 1], "plain-new");
  const first = await shared.command.sluiceEnqueue(args);
  const again = await shared.command.sluiceEnqueue(args);
  assert.ok(first.every((reply) => typeof reply === "string"), "written");
  assert.deepEqual(again, first.map((entry) => [entry, 0]), "known: the same entries");
  assert.equal(await db.xlen(keys.stream), 3);
});

Deno.test("a waiter registers with an expiry, and registers again when Redis restarts without it", async () => {
  // Jobs and records survive the restart (AOF); the registration is taken away by hand first.
  await using redis = await startRedis({ persistence: "always" });
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  const handle = await queue.enqueue("t", 1);
  const result = handle.result({ signal: AbortSignal.timeout(20_000) }).catch((e: Error) => e);
  await waitForRedis(async () => (await db.zcard(queue.keys.waiters)) === 1, "a registration");
  const [token, score] = await db.zrange(queue.keys.waiters, 0, 0, "WITHSCORES");
  const [seconds] = await db.time();
  const left = Number(score) - Number(seconds) * 1_000;
  assert.ok(left > 50_000 && left <= 61_000, `expires in ${left} ms`);
  assert.ok(token!.length > 0);
  // Redis loses the registration and restarts: the subscriber reconnects, and the waiter
  // registers again.
  await db.del(queue.keys.waiters);
  await redis.restart();
  await waitForRedis(async () => (await db.zcard(queue.keys.waiters)) === 1, "registered again");
  await handle.cancel();
  const err = await result;
  assert.ok(err instanceof Error, String(err));
  await waitForRedis(async () => (await db.zcard(queue.keys.waiters)) === 0, "unregistered");
});

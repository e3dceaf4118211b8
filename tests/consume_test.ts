import assert from "node:assert/strict";
import { type Job, LeaseLostError, Queue } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { commandCalls, inspect, pendingCount, waitForRedis } from "./_helpers.ts";

const quiet = { info() {}, warn() {}, error() {} };

Deno.test("consume() yields enqueued jobs to for await, decoded, attempt 1, deliveries 1", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueue("greet", { name: "Ada" }, { id: "j1" });
  const controller = new AbortController();
  const seen: Job[] = [];
  for await (const job of queue.consume({ signal: controller.signal })) {
    seen.push(job);
    await job.ack();
    controller.abort();
  }
  assert.equal(seen.length, 1);
  const [job] = seen;
  assert.deepEqual([job!.id, job!.task, job!.data, job!.attempt, job!.deliveries], [
    "j1",
    "greet",
    { name: "Ada" },
    1,
    1,
  ]);
  await using db = inspect(redis.url);
  assert.equal(await db.xlen(queue.keys.stream), 0, "acked entries are deleted");
  assert.equal(await pendingCount(db, queue.keys.stream), 0);
});

Deno.test("consume() holds exactly prefetch jobs and reads one more only after a settle", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueueMany("t", Array.from({ length: 20 }, (_, i) => ({ data: i })));
  await using db = inspect(redis.url);
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal, prefetch: 5, idleTimeout: 300 })
    .getReader();
  const held: Job[] = [];
  for (let i = 0; i < 5; i++) held.push((await reader.read()).value!);
  assert.equal(await pendingCount(db, queue.keys.stream), 5);
  const state: { sixth?: Job | undefined } = {};
  const next = reader.read().then((r) => state.sixth = r.value);
  // Two renewal ticks pass (the heartbeat moves twice) and still nothing more is read.
  const calls = await commandCalls(db, "xreadgroup");
  for (let beat = 0; beat < 2; beat++) {
    const before = await db.zscore(queue.keys.workers, held[0]!.token.consumer);
    await waitForRedis(
      async () => (await db.zscore(queue.keys.workers, held[0]!.token.consumer)) !== before,
      "a heartbeat",
    );
  }
  assert.equal(state.sixth, undefined);
  assert.equal(await commandCalls(db, "xreadgroup"), calls, "a full consumer sends no read");
  assert.equal(await pendingCount(db, queue.keys.stream), 5);
  await held[0]!.ack();
  await next;
  const sixth = state.sixth!;
  assert.equal(sixth.data, 5);
  assert.equal(await pendingCount(db, queue.keys.stream), 5, "never more than prefetch");
  controller.abort();
  await Promise.all([...held.slice(1), sixth].map((job) => job.ack()));
  reader.releaseLock();
});

Deno.test("aborting during a blocking read ends the stream at once and sends no more reads", async () => {
  await using redis = await startRedis();
  // A long idleTimeout makes the blocking read wait the full 10 s unless it is cut short.
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const controller = new AbortController();
  const loop = (async () => {
    for await (const job of queue.consume({ signal: controller.signal, idleTimeout: 60_000 })) {
      await job.ack();
    }
  })();
  await waitForRedis(async () => /blocked_clients:1/.test(await db.info("clients")), "a block");
  const calls = await commandCalls(db, "xreadgroup");
  const start = performance.now();
  controller.abort();
  await loop;
  const elapsed = performance.now() - start;
  assert.ok(elapsed < 1_000, `the stream ended ${elapsed} ms after the abort`);
  assert.match(await db.info("clients"), /blocked_clients:0/);
  await queue.close();
  assert.equal(await commandCalls(db, "xreadgroup"), calls, "no read after the abort");
});

Deno.test("ending the stream releases prefetched jobs never handed out, with no attempt charged", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, logger: quiet });
  await queue.enqueueMany("t", Array.from({ length: 10 }, (_, i) => ({ id: `j${i}`, data: i })));
  let first: Job | undefined;
  for await (const job of queue.consume({ prefetch: 10 })) {
    first = job;
    break;
  }
  await using db = inspect(redis.url);
  await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 1, "release");
  assert.equal(first!.settled, false, "the job in hand stays leased");
  await first!.ack();
  const controller = new AbortController();
  const rest: Job[] = [];
  for await (const job of queue.consume({ signal: controller.signal, prefetch: 10 })) {
    rest.push(job);
    await job.ack();
    if (rest.length === 9) controller.abort();
  }
  assert.deepEqual(rest.map((j) => j.id).sort(), [
    "j1",
    "j2",
    "j3",
    "j4",
    "j5",
    "j6",
    "j7",
    "j8",
    "j9",
  ]);
  assert.ok(rest.every((j) => j.attempt === 1 && j.deliveries === 1));
});

Deno.test("a job whose lease was taken over cannot be acked, and its signal aborts", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, logger: quiet });
  await queue.enqueue("t", 1);
  await using db = inspect(redis.url);
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal, idleTimeout: 300 }).getReader();
  const job = (await reader.read()).value!;
  await db.xclaim(queue.keys.stream, "sluice", "thief", 0, job.entryId);
  const aborted = new Promise((resolve) => job.signal.addEventListener("abort", resolve));
  await aborted;
  assert.ok(job.signal.reason instanceof LeaseLostError);
  await assert.rejects(job.ack(), LeaseLostError);
  const pending = await db.xpending(queue.keys.stream, "sluice", "-", "+", 10);
  const owner = (pending as [string, string][])[0]?.[1];
  assert.equal(owner, "thief", "the stale consumer did not take it back");
  controller.abort();
  reader.releaseLock();
});

Deno.test("retry() re-adds with attempt + 1, release() unchanged, fail() dead-letters", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueueMany("t", [{ id: "r", data: 1 }, { id: "l", data: 2 }, { id: "f", data: 3 }]);
  const controller = new AbortController();
  const seen: string[] = [];
  for await (const job of queue.consume({ signal: controller.signal })) {
    seen.push(`${job.id}@${job.attempt}`);
    if (job.id === "r" && job.attempt === 1) await job.retry(new Error("again"));
    else if (job.id === "l" && seen.length <= 3) await job.release();
    else if (job.id === "f") await job.fail(new Error("broken"));
    else await job.ack();
    if (seen.length === 5) controller.abort();
  }
  assert.deepEqual(seen, ["r@1", "l@1", "f@1", "r@2", "l@1"]);
  await using db = inspect(redis.url);
  const dead = await db.xrange(queue.keys.dead, "-", "+");
  assert.equal(dead.length, 1);
  const fields = dead[0]![1];
  const get = (k: string) => fields[fields.lastIndexOf(k) + 1];
  assert.equal(get("id"), "f");
  assert.equal(get("reason"), "failed");
  assert.match(get("error")!, /Error: broken/);
  assert.ok(Number(get("failed_at")) > 0);
});

Deno.test("garbage entries go to the dead letters as malformed and bad-json, and the stream goes on", async () => {
  await using redis = await startRedis();
  const warnings: string[] = [];
  const logger = { ...quiet, warn: (m: string) => warnings.push(m) };
  await using queue = new Queue("q", { redis: redis.url, logger });
  await using db = inspect(redis.url);
  await db.xadd(queue.keys.stream, "*", "foo", "bar");
  await db.xadd(
    queue.keys.stream,
    "*",
    "v",
    "1",
    "id",
    "x",
    "task",
    "t",
    "data",
    "{",
    "attempt",
    "1",
    "enq",
    "1",
  );
  await queue.enqueue("t", "good", { id: "good" });
  const controller = new AbortController();
  const seen: string[] = [];
  for await (const job of queue.consume({ signal: controller.signal })) {
    seen.push(job.id);
    await job.ack();
    controller.abort();
  }
  assert.deepEqual(seen, ["good"]);
  const dead = await waitForRedis(async () => {
    const entries = await db.xrange(queue.keys.dead, "-", "+");
    return entries.length === 2 && entries;
  }, "two dead letters");
  const reasons = dead.map((
    [, f],
  ) => [f[f.lastIndexOf("reason") + 1], f[f.lastIndexOf("error") + 1]]);
  assert.deepEqual(reasons.map(([r]) => r), ["malformed", "bad-json"]);
  assert.match(reasons[0]![1]!, /field v is missing/);
  assert.match(reasons[1]![1]!, /field data is not JSON/);
  assert.equal(await pendingCount(db, queue.keys.stream), 0);
  assert.equal(warnings.length, 2, "each dead letter is logged, without its payload");
});

Deno.test("idle deliveries of a dead consumer are reclaimed, past maxDeliveries dead-lettered", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, logger: quiet });
  await using db = inspect(redis.url);
  await queue.enqueueMany("t", [{ id: "a", data: 1 }, { id: "b", data: 2 }]);
  await db.xgroup("CREATE", queue.keys.stream, "sluice", "0", "MKSTREAM");
  // A ghost reads both and dies; "b" has already crash-looped once before.
  await db.xreadgroup("GROUP", "sluice", "ghost", "COUNT", 2, "STREAMS", queue.keys.stream, ">");
  const [, bEntry] = (await db.xrange(queue.keys.stream, "-", "+")).map(([id]) => id);
  await db.xclaim(queue.keys.stream, "sluice", "ghost", 0, bEntry!);
  const controller = new AbortController();
  const seen: Job[] = [];
  const loop = (async () => {
    const options = { signal: controller.signal, idleTimeout: 200, maxDeliveries: 2 };
    for await (const job of queue.consume(options)) {
      seen.push(job);
      await job.ack();
    }
  })();
  // "b" was claimed again after "a", so it may go idle a tick later.
  await waitForRedis(async () => (await db.xlen(queue.keys.dead)) === 1, "b dead-lettered");
  await waitForRedis(
    async () => seen.length === 1 && (await db.xlen(queue.keys.stream)) === 0,
    "a",
  );
  controller.abort();
  await loop;
  assert.deepEqual(seen.map((j) => [j.id, j.deliveries]), [["a", 2]]);
  const dead = await db.xrange(queue.keys.dead, "-", "+");
  const fields = dead[0]![1];
  assert.equal(fields[fields.lastIndexOf("reason") + 1], "delivery-limit");
  assert.equal(fields[fields.indexOf("id") + 1], "b");
});

Deno.test("pending entries trimmed from the stream are dropped from the pending list and logged", async () => {
  await using redis = await startRedis();
  const warnings: string[] = [];
  const logger = { ...quiet, warn: (m: string) => warnings.push(m) };
  await using queue = new Queue("q", { redis: redis.url, logger });
  await using db = inspect(redis.url);
  await queue.enqueueMany("t", [{ data: 1 }, { data: 2 }, { data: 3 }]);
  await db.xgroup("CREATE", queue.keys.stream, "sluice", "0", "MKSTREAM");
  await db.xreadgroup("GROUP", "sluice", "ghost", "COUNT", 3, "STREAMS", queue.keys.stream, ">");
  await db.xtrim(queue.keys.stream, "MAXLEN", 0);
  await queue.enqueue("t", 4, { id: "fresh" });
  const controller = new AbortController();
  for await (const job of queue.consume({ signal: controller.signal, idleTimeout: 200 })) {
    assert.equal(job.id, "fresh");
    await job.ack();
    await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 0, "PEL empty");
    controller.abort();
  }
  assert.ok(
    warnings.some((w) => w.includes("3 pending entries were trimmed")),
    warnings.join("\n"),
  );
});

Deno.test("a consumer with nothing pending and no heartbeat is removed from the group", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, logger: quiet });
  await using db = inspect(redis.url);
  await db.xgroup("CREATE", queue.keys.stream, "sluice", "0", "MKSTREAM");
  await db.xgroup("CREATECONSUMER", queue.keys.stream, "sluice", "ghost");
  const controller = new AbortController();
  const loop = (async () => {
    for await (const job of queue.consume({ signal: controller.signal, idleTimeout: 150 })) {
      await job.ack();
    }
  })();
  await waitForRedis(async () => {
    const consumers = await db.xinfo("CONSUMERS", queue.keys.stream, "sluice") as string[][];
    return !consumers.some((c) => c[1] === "ghost");
  }, "the ghost consumer to go");
  controller.abort();
  await loop;
  await queue.close();
  const left = await db.xinfo("CONSUMERS", queue.keys.stream, "sluice") as unknown[];
  assert.equal(left.length, 0, "a clean stop deletes its own consumer too");
  assert.equal(await db.zcard(queue.keys.workers), 0);
});

Deno.test("consume() rejects out-of-range options with the action, rule and value", async () => {
  await using queue = new Queue("q");
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ prefetch: 0 }, /^Cannot consume q: prefetch must be an integer from 1 to 100000, got 0$/],
    [{ prefetch: 1.5 }, /prefetch must be an integer from 1 to 100000, got 1.5/],
    [{ idleTimeout: 99 }, /idleTimeout must be an integer from 100 to 2147483647, got 99/],
    [{ idleTimeout: 2 ** 31 }, /idleTimeout must be an integer/],
    [{ maxDeliveries: 0 }, /maxDeliveries must be an integer from 1/],
    [{ maxDeliveries: NaN }, /maxDeliveries must be an integer from 1 .* got NaN/],
  ];
  for (const [options, message] of cases) {
    assert.throws(() => queue.consume(options), (err: Error) => {
      assert.ok(err instanceof RangeError, String(err));
      assert.match(err.message, message);
      return true;
    });
  }
  assert.throws(() => queue.consume({ consumer: "" }), /consumer must be a name/);
});

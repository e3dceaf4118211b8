/**
 * Edge cases found in review: settles at maxmemory, RETIRE of a cancelling job, cancel messages
 * per delivery, promotion refused at maxmemory, trimming past large sequence numbers,
 * stats().waiting after a deleted entry, and the read pipelined right behind each settle
 * (which must count reads and reclaims in flight against the window).
 */
import assert from "node:assert/strict";
import type { Redis } from "ioredis";
import { CancelledError, type Job, Queue, task, Worker } from "../mod.ts";
import { settlesWithin } from "../src/async.ts";
import { startRedis } from "../src/testing.ts";
import { inspect, pendingCount, sharedRedis, waitForRedis } from "./_helpers.ts";

const quiet = { info() {}, warn() {}, error() {} };

/** Reads `n` jobs from a consume() stream, keeping them held; fails after `timeout` ms. */
async function take(
  reader: ReadableStreamDefaultReader<Job>,
  n: number,
  timeout = 10_000,
): Promise<Job[]> {
  const reading = (async () => {
    const jobs: Job[] = [];
    for (let i = 0; i < n; i++) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended after ${i} of ${n} jobs`);
      jobs.push(value);
    }
    return jobs;
  })();
  if (!await settlesWithin(reading, timeout)) {
    throw new Error(`Timed out after ${timeout} ms waiting for ${n} jobs`);
  }
  return await reading;
}

/** Resolves once `signal` aborts; fails after `timeout` ms. */
async function aborted(signal: AbortSignal, timeout = 10_000): Promise<void> {
  const { promise, resolve } = Promise.withResolvers<void>();
  if (signal.aborted) resolve();
  else signal.addEventListener("abort", () => resolve(), { once: true });
  if (!await settlesWithin(promise, timeout)) {
    throw new Error(`Timed out after ${timeout} ms waiting for the job's signal to abort`);
  }
}

/**
 * Puts Redis (maxmemory-policy noeviction) at maxmemory: maxmemory goes to half the memory in
 * use, so every write that may grow memory is refused, whatever the size of its arguments.
 * Returns a function that gives Redis room again.
 */
async function fillUp(db: Redis): Promise<() => Promise<void>> {
  const used = Number((await db.info("memory")).match(/used_memory:(\d+)/)![1]);
  await db.config("SET", "maxmemory", String(Math.floor(used / 2)));
  await assert.rejects(db.set("probe", "1"), /^ReplyError: OOM|OOM command not allowed/);
  return async () => {
    await db.config("SET", "maxmemory", "0");
  };
}

/**
 * Waits until a consumer listens on the cancel channel. Its subscriber being ready also means
 * it has asked for a look at the delayed set (it does on every (re)connect), which a read then
 * takes care of: no promotion is due at the settles that follow, so they read.
 */
async function subscribed(db: Redis, channel: string): Promise<void> {
  await waitForRedis(
    async () => ((await db.pubsub("NUMSUB", channel)) as [string, number])[1] === 1,
    "the consumer to subscribe",
  );
}

/** The fields of a valid v1 entry, for raw XADDs. */
function entryFields(id: string): string[] {
  return [
    ...["v", "1", "id", id, "task", "t", "data", JSON.stringify(id)],
    ...["attempt", "1", "enq", String(Date.now())],
  ];
}

/** The entries pending in group `sluice` for one consumer: [entry id, consumer, idle, count]. */
async function pendingOf(
  db: Redis,
  stream: string,
  consumer: string,
): Promise<[string, string, number, number][]> {
  return await db.xpending(stream, "sluice", "-", "+", 10_000, consumer) as [
    string,
    string,
    number,
    number,
  ][];
}

/**
 * Listens, on `sub`, to every outcome message of the queue whose done channel prefix is `done`.
 * Returns a function that resolves with them all so far, as "<job id> <state>" in the order
 * Redis sent them: it publishes a fence message (on `db`) and waits for it, so anything
 * published before has arrived.
 */
async function listenOutcomes(
  sub: Redis,
  db: Redis,
  done: string,
): Promise<() => Promise<string[]>> {
  const outcomes: string[] = [];
  const fenceChannel = `${done}~fence`;
  let fence = Promise.withResolvers<void>();
  sub.on("pmessage", (_pattern: string, channel: string, message: string) => {
    if (channel === fenceChannel) fence.resolve();
    else outcomes.push(`${channel.slice(done.length)} ${message.split("\n")[0]}`);
  });
  await sub.psubscribe(`${done}*`);
  return async () => {
    fence = Promise.withResolvers<void>();
    await db.publish(fenceChannel, "");
    await fence.promise;
    return [...outcomes];
  };
}

/** Closes a stream the test read from: no more reads, prefetched jobs released. */
async function end(controller: AbortController, reader: ReadableStreamDefaultReader<Job>) {
  controller.abort();
  await reader.cancel();
}

Deno.test("at maxmemory, a settle batch lands its ack, fails its delayed retry alone, and publishes only what landed", async () => {
  await using redis = await startRedis({ args: ["--maxmemory-policy", "noeviction"] });
  await using queue = new Queue("q", { redis: redis.url, logger: quiet });
  await using db = inspect(redis.url);
  await using sub = inspect(redis.url);
  await queue.enqueueMany("t", [{ id: "a", data: 1 }, { id: "b", data: 2 }]);
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal, prefetch: 2 }).getReader();
  const [a, b] = await take(reader, 2);
  assert.deepEqual([a!.id, b!.id], ["a", "b"]);
  const published = await listenOutcomes(sub, db, queue.keys.done);

  const restore = await fillUp(db);
  // Both settles go out in the same tick, so in one settle script call.
  const [ack, retry] = await Promise.allSettled([
    a!.ack(),
    b!.retry(new Error("try later"), { delay: 1_000 }),
  ]);
  const consumer = a!.token.consumer;
  const pending = await pendingOf(db, queue.keys.stream, consumer);
  const stillPending = (job: Job) => pending.some(([entry]) => entry === job.entryId);
  // An outcome message for each settle that landed (its entry is no longer pending), and only
  // for those: the retry publishes none, a landed ack its "completed".
  assert.deepEqual(
    await published(),
    stillPending(a!) ? [] : ["a completed"],
    "outcomes are published only for settles that landed",
  );
  // The ack landed; the retry changed nothing, and b is still held.
  assert.equal(ack.status, "fulfilled", String((ack as PromiseRejectedResult).reason));
  assert.equal(retry.status, "rejected", "Redis refused the retry's writes");
  assert.match(
    String((retry as PromiseRejectedResult).reason?.message),
    /^Cannot retry job b: Redis is out of memory/,
  );
  assert.deepEqual(pending.map(([entry, owner, , count]) => [entry, owner, count]), [
    [b!.entryId, consumer, 1],
  ]);
  assert.equal(b!.settled, false, "b is still held");
  assert.equal(await db.zcard(queue.keys.delayed), 0, "nothing was scheduled");
  assert.equal((await queue.job("b").info())?.state, "active");

  // With room again, the same retry goes through.
  await restore();
  await b!.retry(new Error("try later"), { delay: 1_000 });
  const info = await queue.job("b").info();
  assert.equal(info?.state, "retrying");
  assert.equal(info?.attempt, 2);
  assert.notEqual(await db.zscore(queue.keys.delayed, "b"), null);
  assert.equal(await pendingCount(db, queue.keys.stream), 0);
  assert.deepEqual(await published(), ["a completed"]);
  await end(controller, reader);
});

Deno.test("a job cancelled while its consumer held it ends cancelled when that consumer retires, and no peer runs it", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const x = await queue.enqueue("t", "x", { id: "x" });
  const y = await queue.enqueue("t", "y", { id: "y" });
  // Consumer c1 has read both, but the reply never reached it (as when a disconnect cuts a read
  // reply off): both are pending under its name, and only its retirement can give them back.
  await db.xgroup("CREATE", queue.keys.stream, queue.group, "0", "MKSTREAM");
  await db.xreadgroup("GROUP", queue.group, "c1", "COUNT", 2, "STREAMS", queue.keys.stream, ">");
  assert.deepEqual(await x.cancel(), { cancelled: true, state: "active" });
  assert.equal((await x.info())?.state, "active");

  // c1 shuts down.
  const warnings: string[] = [];
  await using c1 = new Queue("q", {
    redis: redis.url,
    logger: { ...quiet, warn: (m) => warnings.push(m) },
  });
  c1.consume({ consumer: "c1", signal: AbortSignal.abort() });
  await c1.close();
  assert.deepEqual(await pendingOf(db, queue.keys.stream, "c1"), []);
  assert.deepEqual(warnings, ["sluice: queue q: released 1 unseen deliveries"]);

  // x ended cancelled, y went back to the stream: it is all a peer can get.
  assert.equal((await x.info())?.state, "cancelled");
  await assert.rejects(x.result(), CancelledError);
  assert.equal((await y.info())?.state, "waiting");
  const left = await db.xrange(queue.keys.stream, "-", "+");
  assert.deepEqual(left.map(([, f]) => f[f.indexOf("id") + 1]), ["y"]);
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal, prefetch: 10 }).getReader();
  const [peer] = await take(reader, 1);
  assert.equal(peer!.id, "y");
  assert.equal(await pendingCount(db, queue.keys.stream), 1, "the peer holds y alone");
  await peer!.ack();
  assert.equal((await x.info())?.state, "cancelled");
  await end(controller, reader);
});

Deno.test("a cancel message remembered for one delivery does not cancel a later job that reuses the id", async () => {
  await using redis = await startRedis();
  // keepResult 0: the record goes as the job ends, so its id may be enqueued again at once.
  await using queue = new Queue("q", { redis: redis.url, keepResult: 0 });
  await using db = inspect(redis.url);
  await using sub = inspect(redis.url);
  const published = await listenOutcomes(sub, db, queue.keys.done);
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal, prefetch: 1 }).getReader();
  const first = await queue.enqueue("t", 1, { id: "x" });
  const [job1] = await take(reader, 1);
  await subscribed(db, queue.keys.cancel);
  assert.deepEqual(await first.cancel(), { cancelled: true, state: "active" });
  await aborted(job1!.signal);
  assert.ok(job1!.signal.reason instanceof CancelledError);
  await job1!.ack();
  assert.equal(await db.exists(queue.keys.job("x")), 0, "the id is free again");

  const second = await queue.enqueue("t", 2, { id: "x" });
  assert.equal(second.duplicate, false);
  const [job2] = await take(reader, 1);
  assert.equal(job2!.id, "x");
  assert.notEqual(job2!.entryId, job1!.entryId);
  // A cancelled job is aborted as it is admitted, before the read hands it out.
  assert.equal(job2!.signal.aborted, false, String(job2!.signal.reason));
  await job2!.ack("done");
  assert.deepEqual(await published(), ["x cancelled", "x completed"]);
  await end(controller, reader);
});

Deno.test("a due delayed job that Redis refuses to promote at maxmemory does not stop reads of jobs already in the stream", async () => {
  await using redis = await startRedis({ args: ["--maxmemory-policy", "noeviction"] });
  const errors: string[] = [];
  await using queue = new Queue("q", {
    redis: redis.url,
    logger: { ...quiet, error: (m) => errors.push(m) },
  });
  await using db = inspect(redis.url);
  await queue.enqueue("t", "late", { id: "late", at: Date.now() - 1_000 }); // due already
  await queue.enqueueMany("t", [1, 2, 3].map((n) => ({ id: `now${n}`, data: n })));
  // The group is made while there is room: Redis refuses to create one at maxmemory.
  await db.xgroup("CREATE", queue.keys.stream, queue.group, "0");
  const restore = await fillUp(db);
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal }).getReader();
  const jobs = await take(reader, 3);
  assert.deepEqual(jobs.map((job) => job.id), ["now1", "now2", "now3"]);
  assert.ok(
    errors.some((m) => m.includes("could not move due delayed jobs to the stream")),
    `the promotion was refused: ${errors.join("\n")}`,
  );
  assert.ok(!errors.some((m) => m.includes("reading failed")), errors.join("\n"));
  assert.notEqual(await db.zscore(queue.keys.delayed, "late"), null, "late is still delayed");
  // Once Redis has room, the delayed job is moved to the stream and read too.
  await restore();
  const [late] = await take(reader, 1);
  assert.equal(late!.id, "late");
  for (const job of [...jobs, late!]) await job.ack();
  assert.equal(await pendingCount(db, queue.keys.stream), 0);
  await end(controller, reader);
});

Deno.test("an entry with a huge sequence number is acked, and the stream is trimmed empty", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  // Sequence + 1 is 1e14: a Lua number that prints as "1e+14", no stream id.
  const entryId = `${Date.now()}-99999999999999`;
  assert.equal(await db.xadd(queue.keys.stream, entryId, ...entryFields("huge")), entryId);
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal }).getReader();
  const [job] = await take(reader, 1);
  assert.equal(job!.entryId, entryId);
  await job!.ack();
  assert.equal((await queue.job("huge").info())?.state, "completed");
  assert.equal(await pendingCount(db, queue.keys.stream), 0);
  assert.equal(await db.xlen(queue.keys.stream), 0);
  await end(controller, reader);
});

Deno.test("stats().waiting is exact once the group read past an entry a cancel deleted", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const handles = await queue.enqueueMany("t", Array.from({ length: 5 }, (_, i) => ({ data: i })));
  const controllerA = new AbortController();
  const readerA = queue.consume({ signal: controllerA.signal, prefetch: 2 }).getReader();
  const held = await take(readerA, 2);
  assert.deepEqual(held.map((job) => job.data), [0, 1]);
  assert.deepEqual(await handles[2]!.cancel(), { cancelled: true, state: "waiting" });
  const controllerB = new AbortController();
  const readerB = queue.consume({ signal: controllerB.signal, prefetch: 1 }).getReader();
  const [past] = await take(readerB, 1);
  assert.equal(past!.data, 3, "the group read past the deleted entry");
  // Redis 7.0 reports a lag of 2 here: it still counts the deleted entry.
  const stats = await queue.stats();
  assert.deepEqual([stats.waiting, stats.active], [1, 3]);
  for (const job of [...held, past!]) await job.ack();
  await end(controllerA, readerA);
  await end(controllerB, readerB);
});

Deno.test("acking a full prefetch brings the next jobs in the same round trip: each settle carries its read, with no blocking read", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  await queue.enqueueMany("t", Array.from({ length: 100 }, (_, i) => ({ data: i })));
  const controller = new AbortController();
  // A long idleTimeout: no reclaim or delayed-job check falls due, and every settle reads.
  const reader = queue.consume({ signal: controller.signal, prefetch: 10, idleTimeout: 60_000 })
    .getReader();
  await subscribed(db, queue.keys.cancel);
  let held = await take(reader, 10);
  const seen = held.map((job) => job.data);
  // Every XREADGROUP and settle Redis runs from here on, in order, by where it came from: the
  // consumer's command connection, or its blocking one.
  const clients = await db.client("LIST") as string;
  const addressOf = (role: string) =>
    clients.split("\n").find((line) => line.includes(`name=sluice:${role}:`))
      ?.match(/addr=(\S+)/)?.[1];
  const blocking = addressOf("blocking");
  assert.ok(blocking !== undefined, "the blocking connection is open");
  const monitor = await db.monitor();
  const calls: string[] = [];
  const fence = Promise.withResolvers<void>();
  monitor.on("monitor", (_time: string, args: string[], source: string) => {
    const command = String(args[0]).toLowerCase();
    const from = source === blocking ? "blocking" : source === "lua" ? "lua" : "command";
    if (command === "xreadgroup") calls.push(`read from ${from}`);
    if (command === "evalsha" || command === "eval") calls.push(`script from ${from}`);
    if (command === "echo" && args[1] === "review-fence") fence.resolve();
  });
  try {
    for (let batch = 1; batch < 10; batch++) {
      await Promise.all(held.map((job) => job.ack()));
      held = await take(reader, 10);
      seen.push(...held.map((job) => job.data));
    }
    await Promise.all(held.map((job) => job.ack()));
    await db.echo("review-fence");
    await fence.promise;
  } finally {
    const closed = new Promise((resolve) => monitor.once("end", resolve));
    monitor.disconnect();
    await closed;
  }
  assert.deepEqual(seen, Array.from({ length: 100 }, (_, i) => i));
  // Each batch of 10 acks goes out as two settle calls of at most half the prefetch, each
  // followed at once, on the same connection, by the read of the room it frees.
  const pair = ["script from command", "read from command"];
  assert.deepEqual(calls, Array.from({ length: 20 }, () => pair).flat());
  assert.equal(await db.xlen(queue.keys.stream), 0);
  await end(controller, reader);
});

Deno.test("a read in flight counts against the room a settle reads into: never more than prefetch held", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  await queue.enqueue("t", "a", { id: "a" });
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal, prefetch: 2, idleTimeout: 60_000 })
    .getReader();
  await subscribed(db, queue.keys.cancel);
  const [a] = await take(reader, 1);
  // The stream has nothing new: the read for the one free place blocks in Redis.
  const next = reader.read();
  await waitForRedis(
    async () => /^blocked_clients:1\r?$/m.test(await db.info("clients")),
    "the consumer's read to block",
  );
  // On the connection the consumer settles on, three jobs arrive, then a is acked. Redis hands
  // b to the blocked read before the settle runs, and the settle is sent before that read's
  // reply can be back: the settle must count the read in flight, and read one job, not two.
  // The process's shared command connection: the one the consumer settles on.
  await using shared = sharedRedis(redis.url);
  const command = shared.command;
  const added = ["b", "c", "d"].map((id) =>
    command.xadd(queue.keys.stream, "*", ...entryFields(id))
  );
  await a!.ack();
  await Promise.all(added);
  assert.equal(await pendingCount(db, queue.keys.stream), 2, "prefetch 2: b and c, not d");
  const first = (await next).value!;
  const [second] = await take(reader, 1);
  assert.deepEqual([first.id, second!.id].sort(), ["b", "c"]);
  await Promise.all([first.ack(), second!.ack()]);
  const [d] = await take(reader, 1);
  assert.equal(d!.id, "d");
  await d!.ack();
  assert.equal(await db.xlen(queue.keys.stream), 0);
  await end(controller, reader);
});

// Reads in flight must count against the room until what they bring is held: a settle sized in
// between would read the same room again.
Deno.test({
  name:
    "draining 500 jobs that trickle in, acked at random moments, a consumer never holds more than prefetch",
}, async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const total = 500;
  const prefetch = 8;
  const consumer = "drainer";
  const random = (n: number) => Math.floor(Math.random() * n);
  /** Lets other tasks run: a random number of event loop turns, to vary the interleaving. */
  const turns = async (n: number) => {
    for (let i = 0; i < n; i++) await new Promise((resolve) => setTimeout(resolve, 0));
  };
  const controller = new AbortController();
  const reader = queue.consume({
    signal: controller.signal,
    prefetch,
    consumer,
    idleTimeout: 60_000,
  }).getReader();

  const producing = (async () => {
    for (let sent = 0; sent < total;) {
      const n = Math.min(total - sent, 1 + random(4));
      await queue.enqueueMany(
        "t",
        Array.from({ length: n }, (_, i) => ({ id: `j${sent + i}`, data: sent + i })),
      );
      sent += n;
      await turns(random(3));
    }
  })();

  const held: Job[] = [];
  const seen = new Set<string>();
  let arrived = Promise.withResolvers<void>();
  const reading = (async () => {
    while (seen.size < total) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended after ${seen.size} jobs`);
      assert.ok(!seen.has(value.id), `${value.id} delivered twice`);
      seen.add(value.id);
      held.push(value);
      arrived.resolve();
    }
  })();

  let acked = 0;
  let batches = 0;
  let most = 0;
  const acking = (async () => {
    while (acked < total) {
      if (held.length === 0) {
        await arrived.promise;
        arrived = Promise.withResolvers();
        continue;
      }
      // Mostly at once, sometimes a turn later; some of the held jobs, at random.
      if (random(4) === 0) await turns(1);
      const batch = held.splice(0, 1 + random(held.length));
      await Promise.all(batch.map((job) => job.ack()));
      acked += batch.length;
      batches++;
      const pending = (await pendingOf(db, queue.keys.stream, consumer)).length;
      most = Math.max(most, pending);
      assert.ok(
        pending <= prefetch,
        `${pending} jobs pending for the consumer, prefetch ${prefetch}`,
      );
    }
  })();

  const all = Promise.all([producing, reading, acking]);
  assert.ok(await settlesWithin(all, 60_000), `drained in time (${acked} of ${total} acked)`);
  await all;
  assert.equal(seen.size, total);
  assert.ok(batches > 1 && most > 0, `${batches} ack batches, at most ${most} pending`);
  assert.equal(await pendingCount(db, queue.keys.stream), 0);
  assert.equal(await db.xlen(queue.keys.stream), 0);
  await end(controller, reader);
});

Deno.test("with keepResult 0, result() gets the outcome of a job that finishes while it starts up", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, keepResult: 0 });
  // One earlier result() connects the queue's subscriber, so the next one subscribes quickly.
  const warm = await queue.enqueue("t", null, { id: "warm" });
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal }).getReader();
  const warmResult = warm.result();
  const [first] = await take(reader, 1);
  await first!.ack("warm");
  assert.equal(await warmResult, "warm");
  for (let i = 0; i < 5; i++) {
    const handle = await queue.enqueue("t", null, { id: `x${i}` });
    const [job] = await take(reader, 1);
    const result = handle.result();
    await job!.ack(`done ${i}`);
    assert.equal(await result, `done ${i}`);
  }
  await end(controller, reader);
});

Deno.test("with two settle calls under way and fast jobs, Redis never has more than concurrency + prefetch pending", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const noop = task("noop", () => {});
  await queue.enqueueMany(noop, Array.from({ length: 600 }, () => ({ data: null })));
  const worker = new Worker("q", [noop], {
    redis: redis.url,
    concurrency: 3,
    prefetch: 5,
    idleTimeout: 60_000,
    handleSignals: false,
    logger: { warn() {}, error() {} },
  });
  let done = 0, peak = 0;
  const all = Promise.withResolvers<void>();
  const samples: Promise<void>[] = [];
  worker.addEventListener("completed", () => {
    samples.push(pendingCount(db, queue.keys.stream).then((n) => void (peak = Math.max(peak, n))));
    if (++done === 600) all.resolve();
  });
  const run = worker.run();
  await all.promise;
  await Promise.all(samples);
  await worker.stop();
  await run;
  assert.ok(peak > 0 && peak <= 8, `peak pending ${peak}`);
  assert.equal(await pendingCount(db, queue.keys.stream), 0);
});

Deno.test("a release refused at maxmemory (code 3) leaves its room taken: the read behind it does not fill it", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  await queue.enqueueMany("t", ["a", "b", "c", "d"].map((id) => ({ data: id, id })));
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal, prefetch: 2, idleTimeout: 60_000 })
    .getReader();
  await subscribed(db, queue.keys.cancel);
  const [a, b] = await take(reader, 2);
  const roomy = await fillUp(db);
  await assert.rejects(a!.release(), /out of memory/);
  // The release and the read behind it have both been answered: Redis's count is final.
  assert.equal(await pendingCount(db, queue.keys.stream), 2, "prefetch 2");
  await roomy();
  await a!.ack();
  await b!.ack();
  await end(controller, reader);
});

Deno.test("a reclaim under way holds its room: a settle's read sent meanwhile does not fill it too", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  await queue.enqueue("t", "a", { id: "a" });
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal, prefetch: 3, idleTimeout: 100 })
    .getReader();
  const [a] = await take(reader, 1);
  // A dead peer holds x and y; four fresh entries wait behind them.
  const fields = (
    id: string,
  ) => ["v", "1", "id", id, "task", "t", "data", '"x"', "attempt", "1", "enq", "1"];
  for (const id of ["x", "y"]) await db.xadd(queue.keys.stream, "*", ...fields(id));
  await db.xreadgroup("GROUP", queue.group, "ghost", "COUNT", 2, "STREAMS", queue.keys.stream, ">");
  for (const id of ["f1", "f2", "f3", "f4"]) await db.xadd(queue.keys.stream, "*", ...fields(id));
  await waitForRedis(async () => {
    const rows = await db.xpending(
      queue.keys.stream,
      queue.group,
      "IDLE",
      150,
      "-",
      "+",
      10,
      "ghost",
    );
    return (rows as unknown[]).length === 2;
  }, "the peer's deliveries idle past idleTimeout");
  // Ack a the moment the reclaim script is sent, before its reply.
  await using shared = sharedRedis(redis.url);
  const client = shared.command as unknown as Record<string, (...args: unknown[]) => unknown>;
  const reclaim = client.sluiceReclaim!;
  let acked: Promise<void> | undefined;
  client.sluiceReclaim = function (this: unknown, ...args: unknown[]) {
    const reply = reclaim.apply(this, args);
    acked ??= a!.ack();
    return reply;
  };
  const more = await take(reader, 2);
  await acked;
  // The reclaim and the ack with the read behind it have both been answered.
  assert.ok((await pendingCount(db, queue.keys.stream)) <= 3, "prefetch 3");
  client.sluiceReclaim = reclaim;
  for (const job of more) await job.ack();
  await end(controller, reader);
});

Deno.test("at maxmemory, an ack of a grouped job lands and moves the group's next job in", async () => {
  await using redis = await startRedis({ args: ["--maxmemory-policy", "noeviction"] });
  await using queue = new Queue("q", { redis: redis.url, logger: quiet });
  await using db = inspect(redis.url);
  await queue.groups.set("g", { concurrency: 1 });
  await queue.enqueueMany("t", [{ id: "a", data: 1, group: "g" }, {
    id: "b",
    data: 2,
    group: "g",
  }]);
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal, prefetch: 1 }).getReader();
  const [a] = await take(reader, 1);
  assert.equal(a!.id, "a");
  const restore = await fillUp(db);
  // The settle's gate work starts with a write that frees memory, so Redis lets the rest of
  // the script (the XADD that moves b in) through: acks drain a full Redis.
  await a!.ack();
  await restore();
  const [group] = await queue.groups.list();
  assert.deepEqual([group?.running, group?.waiting], [1, 0]);
  const [b] = await take(reader, 1);
  assert.equal(b!.id, "b");
  await b!.ack();
  await end(controller, reader);
});

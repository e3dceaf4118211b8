/**
 * Durable mode (`durability: { replicas, timeout }`): a WAIT behind every enqueue and settle,
 * against a real master and replica, with the replica frozen (SIGSTOP) to make WAIT fall short.
 */
import assert from "node:assert/strict";
import { DurabilityError, type Job, Queue, task, Worker } from "../mod.ts";
import { startCluster, startRedis, type TestRedis } from "../src/testing.ts";
import { clusterNodes, masterOf } from "./_cluster.ts";
import { QUICK_SYNC } from "../src/testing/_process.ts";
import { settleArgs } from "../src/scripts/settle.ts";
import { commandCalls, inspect, sharedRedis, waitForRedis, waitUntil } from "./_helpers.ts";

/** A master and one replica of it, in sync; `freeze()`/`thaw()` stop and resume the replica. */
async function replicated(): Promise<
  AsyncDisposable & {
    master: TestRedis;
    replica: TestRedis;
    freeze(): void;
    thaw(): void;
  }
> {
  const master = await startRedis({ args: QUICK_SYNC });
  let replica: TestRedis | undefined;
  let frozen = false;
  try {
    replica = await startRedis({ args: ["--replicaof", "127.0.0.1", String(master.port)] });
    await using db = inspect(master.url);
    await waitForRedis(
      async () => /^slave0:.*state=online/m.test(await db.info("replication")),
      "the replica in sync",
    );
    // After a diskless sync Redis streams writes to the replica only from its first ACK, which
    // it sends once a second: until then WAIT cannot succeed.
    await db.set("replicated", "1");
    assert.equal(await db.wait(1, 5_000), 1, "the replica acknowledges writes");
    await db.del("replicated");
  } catch (err) {
    await replica?.stop();
    await master.stop();
    throw err;
  }
  const theReplica = replica;
  return {
    master,
    replica: theReplica,
    freeze() {
      Deno.kill(theReplica.pid, "SIGSTOP");
      frozen = true;
    },
    thaw() {
      if (frozen) Deno.kill(theReplica.pid, "SIGCONT");
      frozen = false;
    },
    async [Symbol.asyncDispose]() {
      // A stopped process cannot take the SIGTERM that stops it.
      if (frozen) Deno.kill(theReplica.pid, "SIGCONT");
      await theReplica.stop();
      await master.stop();
    },
  };
}

/** A logger that keeps its lines, and lets a test wait for one. */
function recorder() {
  const lines: string[] = [];
  const wakers = new Set<() => void>();
  const add = (line: string) => {
    lines.push(line);
    for (const wake of wakers) wake();
  };
  return {
    lines,
    logger: { info: add, warn: add, error: (message: string) => add(message) },
    waitFor(pattern: RegExp, timeout = 10_000): Promise<string> {
      return waitUntil(
        () => lines.find((line) => pattern.test(line)),
        (wake) => {
          wakers.add(wake);
          return () => wakers.delete(wake);
        },
        timeout,
        () => `a log line matching ${pattern}; got:\n${lines.join("\n")}`,
      );
    },
  };
}

const noop = task("noop", () => {});

// --- the option -------------------------------------------------------------------------------

for (
  const [label, durability, error] of [
    [
      "replicas 0",
      { replicas: 0, timeout: 100 },
      /durability\.replicas must be an integer from 1 to 16, got 0$/,
    ],
    [
      "replicas 17",
      { replicas: 17, timeout: 100 },
      /durability\.replicas must be an integer from 1 to 16, got 17$/,
    ],
    ["replicas 1.5", { replicas: 1.5, timeout: 100 }, /replicas must be an integer .* got 1\.5$/],
    ["replicas as a string", { replicas: "1", timeout: 100 }, /replicas must be .* got "1"$/],
    ["no replicas", { timeout: 100 }, /replicas must be .* got undefined$/],
    [
      "timeout 0",
      { replicas: 1, timeout: 0 },
      /timeout must be an integer from 1 to 10000 \(ms\), got 0 \(WAIT with 0 would wait forever\)$/,
    ],
    [
      "timeout 10001",
      { replicas: 1, timeout: 10_001 },
      /timeout must be an integer from 1 to 10000 \(ms\), got 10001$/,
    ],
    ["timeout -1", { replicas: 1, timeout: -1 }, /timeout must be .* got -1$/],
    ["timeout NaN", { replicas: 1, timeout: NaN }, /timeout must be .* got NaN$/],
    ["timeout Infinity", { replicas: 1, timeout: Infinity }, /timeout must be .* got Infinity$/],
    ["no timeout", { replicas: 1 }, /timeout must be .* got undefined$/],
  ] as const
) {
  Deno.test(`durability with ${label} is refused with RangeError, naming the action and value`, () => {
    assert.throws(
      () => new Queue("q", { durability: durability as never }),
      (err: Error) =>
        err instanceof RangeError && /^Cannot create queue: /.test(err.message) &&
        error.test(err.message),
    );
  });
}

Deno.test("durability that is not { replicas, timeout } is refused with TypeError", () => {
  for (const bad of [null, 1, "1", [1, 100]]) {
    assert.throws(
      () => new Queue("q", { durability: bad as never }),
      /^TypeError: Cannot create queue: durability must be \{ replicas, timeout \}, got /,
    );
  }
  assert.throws(
    () => new Queue("q", { durability: { replica: 1, timeout: 100 } as never }),
    /^TypeError: Cannot create queue: durability has an unknown option "replica" \(known: replicas, timeout\)$/,
  );
});

Deno.test("durability edges: replicas 1 and 16, timeout 1 and 10000 are accepted", async () => {
  for (const durability of [{ replicas: 1, timeout: 1 }, { replicas: 16, timeout: 10_000 }]) {
    await new Queue("q", { durability }).close();
  }
});

Deno.test("a Worker and consume() refuse a durability timeout over a third of idleTimeout", async () => {
  const durability = { replicas: 1, timeout: 1_000 };
  assert.throws(
    () => new Worker("q", [noop], { durability, idleTimeout: 2_999, handleSignals: false }),
    /^RangeError: Cannot create worker: durability\.timeout must be at most a third of idleTimeout \(999 ms\): WAIT holds up lease renewals, got 1000$/,
  );
  // Exactly a third is allowed.
  new Worker("q", [noop], { durability, idleTimeout: 3_000, handleSignals: false });
  await using queue = new Queue("q", { durability });
  assert.throws(
    () => queue.consume({ idleTimeout: 2_000 }),
    /^RangeError: Cannot consume q: durability\.timeout must be at most a third of idleTimeout \(666 ms\)/,
  );
});

// --- what it costs when off -----------------------------------------------------------------

Deno.test("without durability nothing sends WAIT: enqueue and a worker's settles", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueueMany("noop", Array.from({ length: 300 }, () => ({ data: null })));
  const worker = new Worker("q", [noop], {
    redis: redis.url,
    concurrency: 8,
    handleSignals: false,
  });
  let done = 0;
  worker.addEventListener("completed", () => {
    if (++done === 300) worker.stop();
  });
  await worker.run();
  assert.equal(done, 300);
  assert.equal(await commandCalls(db, "wait"), 0);
});

// --- enqueue ----------------------------------------------------------------------------------

Deno.test("durable enqueue resolves once the replica has the jobs, with one WAIT per pipeline", async () => {
  await using setup = await replicated();
  await using queue = new Queue("q", {
    redis: setup.master.url,
    durability: { replicas: 1, timeout: 2_000 },
  });
  await using replica = inspect(setup.replica.url);
  await using db = inspect(setup.master.url);
  const waits = await commandCalls(db, "wait");
  const one = await queue.enqueue("noop", 1, { id: "one" });
  // WAIT said the replica acknowledged: it has the entry and the record already.
  assert.equal(await replica.xlen(queue.keys.stream), 1);
  assert.equal(await replica.hget(queue.keys.job("one"), "state"), "waiting");
  assert.equal(one.id, "one");
  const many = await queue.enqueueMany(
    "noop",
    Array.from({ length: 2_500 }, (_, n) => ({ data: n })),
  );
  assert.equal(many.length, 2_500);
  assert.equal(await replica.xlen(queue.keys.stream), 2_501);
  // 1 pipeline for the single job, 3 (of 1,000 jobs at most) for the 2,500.
  assert.equal(await commandCalls(db, "wait") - waits, 4);
});

Deno.test("durable enqueue rejects with DurabilityError within about the timeout while the replica is stopped", async () => {
  await using setup = await replicated();
  const timeout = 300;
  await using queue = new Queue("mail", {
    redis: setup.master.url,
    durability: { replicas: 1, timeout },
  });
  await queue.enqueue("welcome", 0, { id: "warm-up" }); // connected, and replicated
  setup.freeze();
  const start = performance.now();
  const err = await queue.enqueue("welcome", { to: "a" }, { id: "welcome-a" }).catch((e) => e);
  const took = performance.now() - start;
  assert.ok(err instanceof DurabilityError, String(err));
  assert.equal(err.name, "DurabilityError");
  assert.equal(err.acknowledged, 0);
  assert.equal(err.required, 1);
  assert.deepEqual(err.ids, ["welcome-a"]);
  assert.equal(
    err.message,
    "Cannot enqueue welcome on queue mail: 0 of 1 replicas acknowledged the write within 300 ms; the job may or may not have been written (Redis ran the write, but a failover before a replica has it would lose it): enqueue again with the same ids to be sure, a known id is not written twice",
  );
  assert.ok(took >= timeout - 5 && took < timeout + 2_000, `rejected after ${took} ms`);

  // Many jobs: every id is named.
  const items = Array.from({ length: 1_200 }, (_, n) => ({ id: `m${n}`, data: n }));
  const many = await queue.enqueueMany("welcome", items).catch((e) => e);
  assert.ok(many instanceof DurabilityError);
  assert.equal(many.ids.length, 1_200);
  assert.match(many.message, /the 1200 jobs may or may not have been written/);

  // Once the replica is back, the same enqueue again is confirmed, and writes nothing twice.
  setup.thaw();
  const again = await queue.enqueue("welcome", { to: "a" }, { id: "welcome-a" });
  assert.equal(again.duplicate, true);
  await using replica = inspect(setup.replica.url);
  assert.equal(await replica.xlen(queue.keys.stream), 1 + 1 + 1_200);
});

Deno.test("durable enqueue asking for more replicas than there are says how many acknowledged", async () => {
  await using setup = await replicated();
  await using queue = new Queue("q", {
    redis: setup.master.url,
    durability: { replicas: 2, timeout: 50 },
  });
  const err = await queue.enqueue("t", 1).catch((e) => e);
  assert.ok(err instanceof DurabilityError);
  assert.equal(err.acknowledged, 1);
  assert.equal(err.required, 2);
  assert.match(err.message, /: 1 of 2 replicas acknowledged the write within 50 ms; /);
});

Deno.test("on Redis Cluster, WAIT goes to the queue's master: enqueue and settles wait for its replica", async () => {
  await using cluster = await startCluster({ masters: 3, replicasPerMaster: 1 });
  const redis = { cluster: [...cluster.urls] };
  const durability = { replicas: 1, timeout: 300 };
  const owner = await masterOf(cluster.urls[0]!, "{q}");
  await using admin = inspect(`redis://127.0.0.1:${owner.port}`);
  await admin.set("{q}:replicated", "1"); // the replica streams (see replicated() above)
  assert.equal(await admin.wait(1, 5_000), 1);
  await using queue = new Queue("q", { redis, durability });
  await queue.enqueueMany("noop", Array.from({ length: 1_500 }, () => ({ data: null })));
  const worker = new Worker("q", [noop], { redis, durability, handleSignals: false });
  let done = 0;
  worker.addEventListener("completed", () => {
    if (++done === 1_500) worker.stop();
  });
  await worker.run();
  assert.equal(done, 1_500);
  const waits = Number((await admin.info("commandstats")).match(/cmdstat_wait:calls=(\d+)/)![1]);
  assert.ok(waits >= 1 + 2 + 1, `${waits} WAITs on the queue's master`);
  const replica = clusterNodes(await admin.call("CLUSTER", "NODES")).find((n) =>
    n.master === owner.id
  )!;
  const pid = cluster.nodes.find((n) => n.port === replica.port)!.pid;
  Deno.kill(pid, "SIGSTOP");
  try {
    const err = await queue.enqueue("noop", 1, { id: "x" }).catch((e) => e);
    assert.ok(err instanceof DurabilityError, String(err));
    assert.equal(err.acknowledged, 0);
  } finally {
    Deno.kill(pid, "SIGCONT");
  }
});

// --- settles ----------------------------------------------------------------------------------

Deno.test("a durable worker reports a job done only once its ack is replicated, and logs once", async () => {
  await using setup = await replicated();
  await using db = inspect(setup.master.url);
  {
    await using producer = new Queue("q", { redis: setup.master.url });
    await producer.enqueue("noop", 1, { id: "first" }); // replicated before the freeze
  }
  const log = recorder();
  let runs = 0;
  const counted = task("noop", () => {
    runs++;
    return "ok";
  });
  const worker = new Worker("q", [counted], {
    redis: setup.master.url,
    durability: { replicas: 1, timeout: 100 },
    logger: log.logger,
    handleSignals: false,
  });
  const completed: string[] = [];
  const errors: Error[] = [];
  const first = Promise.withResolvers<void>();
  const second = Promise.withResolvers<void>();
  worker.addEventListener("completed", (e) => {
    completed.push(e.detail.job.id);
    (e.detail.job.id === "first" ? first : second).resolve();
  });
  worker.addEventListener("error", (e) => errors.push(e.detail.error));
  const running = worker.run();
  try {
    await first.promise;
    setup.freeze();
    {
      await using producer = new Queue("q", { redis: setup.master.url });
      await producer.enqueue("noop", 2, { id: "second" });
    }
    await log.waitFor(/settles are not replicated: 0 of 1 replicas acknowledged within 100 ms/);
    // The ack ran on the master, and was sent again (with a WAIT) a few times: still not done.
    const waits = await commandCalls(db, "wait");
    await waitForRedis(async () => (await commandCalls(db, "wait")) >= waits + 3, "3 resends");
    assert.equal(await db.hget("sluice:{q}:job:second", "state"), "completed");
    assert.deepEqual(completed, ["first"]);
    assert.equal(runs, 2);
    setup.thaw();
    await second.promise;
    assert.deepEqual(completed, ["first", "second"]);
    assert.equal(runs, 2, "the job ran once");
    assert.deepEqual(errors, [], "no lost lease, no failed settle");
    const warned = log.lines.filter((line) => /settles are not replicated/.test(line));
    assert.equal(warned.length, 1, `one warning for the whole outage:\n${log.lines.join("\n")}`);
    await log.waitFor(/settles are replicated again \(after \d+ ms\)/);
    await using replica = inspect(setup.replica.url);
    assert.equal(await replica.hget("sluice:{q}:job:second", "state"), "completed");
  } finally {
    setup.thaw();
    await worker.stop();
    await running;
  }
});

Deno.test("job.ack() from consume() resolves only after the replica acknowledged it", async () => {
  await using setup = await replicated();
  const log = recorder();
  await using queue = new Queue("q", {
    redis: setup.master.url,
    durability: { replicas: 1, timeout: 100 },
    logger: log.logger,
  });
  await queue.enqueueMany("t", [{ data: 1, id: "a" }, { data: 2, id: "b" }]);
  const controller = new AbortController();
  const jobs: Job[] = [];
  for await (const job of queue.consume({ signal: controller.signal, prefetch: 2 })) {
    jobs.push(job);
    if (jobs.length === 2) break;
  }
  await jobs[0]!.ack("fine"); // replicated at once
  setup.freeze();
  let acked = false;
  const ack = jobs[1]!.ack("late").then(() => acked = true);
  await log.waitFor(/settles are not replicated/);
  await using db = inspect(setup.master.url);
  const waits = await commandCalls(db, "wait");
  await waitForRedis(async () => (await commandCalls(db, "wait")) >= waits + 2, "2 resends");
  assert.equal(acked, false);
  assert.equal(jobs[1]!.settled, false);
  setup.thaw();
  await ack;
  assert.equal(jobs[1]!.settled, true);
  assert.equal(await queue.job("b").result(), "late");
});

Deno.test("closing a consumer whose ack waits for a replica rejects the ack with DurabilityError", async () => {
  await using setup = await replicated();
  const log = recorder();
  const queue = new Queue("q", {
    redis: setup.master.url,
    durability: { replicas: 1, timeout: 50 },
    logger: log.logger,
  });
  try {
    await queue.enqueue("t", 1, { id: "a" });
    let job: Job | undefined;
    for await (const j of queue.consume({ prefetch: 1 })) {
      job = j;
      break;
    }
    setup.freeze();
    const ack = job!.ack().catch((e) => e);
    await log.waitFor(/settles are not replicated/);
    await queue.close(); // gives the settle a few seconds, then gives up on it
    const err = await ack;
    assert.ok(err instanceof DurabilityError, String(err));
    assert.equal(err.required, 1);
    assert.deepEqual(err.ids, ["a"]);
    assert.match(
      err.message,
      /^Cannot settle 1 jobs on queue q: consumer .* stopped before 1 replicas acknowledged the settle/,
    );
  } finally {
    setup.thaw();
    await queue.close();
  }
});

// --- the same settle twice --------------------------------------------------------------------

Deno.test("the same ack sent twice: the second finds no pending entry, reports 0 and changes nothing", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using shared = sharedRedis(redis.url);
  await using db = inspect(redis.url);
  await queue.enqueueMany("t", [{ id: "a", data: 1 }, { id: "b", data: 2 }]);
  await db.xgroup("CREATE", queue.keys.stream, "sluice", "0");
  const read = await db.xreadgroup(
    "GROUP",
    "sluice",
    "c",
    "COUNT",
    1,
    "STREAMS",
    queue.keys.stream,
    ">",
  ) as [string, [string, string[]][]][];
  const entryId = read[0]![1][0]![0];
  const op = {
    op: "ack" as const,
    job: { entryId, deliveries: 1, id: "a", attempt: 1 },
    result: '"done"',
    startedAt: "1",
  };
  const args = settleArgs(
    { keys: queue.keys, group: "sluice", keepResult: 60_000, maxDead: 0 },
    "c",
    [op],
  );
  assert.deepEqual(await shared.command.sluiceSettle(args), [1]);
  const record = await db.hgetall(queue.keys.job("a"));
  const dump = async () => ({
    stream: await db.xrange(queue.keys.stream, "-", "+"),
    pending: await db.xpending(queue.keys.stream, "sluice"),
    dead: await db.xlen(queue.keys.dead),
    keys: (await db.keys("*")).sort(),
  });
  const before = await dump();
  assert.deepEqual(await db.xpending(queue.keys.stream, "sluice", entryId, entryId, 1), []);
  // Sent again, as a durable worker does after a WAIT fell short: fenced out, nothing written.
  assert.deepEqual(await shared.command.sluiceSettle(args), [0]);
  assert.deepEqual(await dump(), before);
  assert.deepEqual(await db.hgetall(queue.keys.job("a")), record);
  assert.equal(record.state, "completed");
});

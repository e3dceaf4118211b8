/**
 * Fault scenarios with worker processes killed or frozen mid-run, counted in a ledger kept
 * outside the Redis under test.
 */
import assert from "node:assert/strict";
import { Queue } from "../../mod.ts";
import { startRedis } from "../../src/testing.ts";
import { inspect, pendingCount, waitForRedis, WorkerProcess } from "../_helpers.ts";
import { Ledger, work } from "./_ledger.ts";

async function enqueue(queue: Queue, ledger: Ledger, jobs: ReturnType<typeof work>) {
  const handles = await queue.enqueueMany("work", jobs);
  ledger.add(handles.map((h) => h.id));
}

Deno.test("rolling kill -9 of 3 workers over 5,000 jobs loses nothing", async () => {
  await using redis = await startRedis();
  await using ledger = await Ledger.start();
  await using queue = new Queue("q", { redis: redis.url });
  const options = { ledger: ledger.url, concurrency: 1, prefetch: 2, idle: 1_000 };
  const perWorker = 1 + 2;
  const workers = Array.from({ length: 3 }, () => new WorkerProcess(redis.url, options));
  let inFlight = 0;
  try {
    await Promise.all(workers.map((w) => w.waitFor((e) => e.ev === "ready", "ready")));
    await enqueue(queue, ledger, work(5_000, 5));
    let kills = 0;
    let done = false;
    const all = ledger.waitForCommits(5_000, 120_000).finally(() => done = true);
    while (!done) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const pause = new Promise((resolve) =>
        timer = setTimeout(resolve, 1_500 + Math.random() * 1_000)
      );
      await Promise.race([pause, all]);
      clearTimeout(timer);
      if (done) break;
      const victim = Math.floor(Math.random() * workers.length);
      workers[victim]!.signal("SIGKILL");
      await workers[victim]![Symbol.asyncDispose]();
      inFlight += perWorker;
      kills++;
      workers[victim] = new WorkerProcess(redis.url, options);
      await workers[victim]!.waitFor((e) => e.ev === "ready", "ready");
    }
    await all;
    assert.ok(kills >= 2, `only ${kills} kills happened`);
    await using db = inspect(redis.url);
    await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 0, "pending 0");
    assert.equal(await db.xlen(queue.keys.dead), 0, "nothing dead-lettered by the kills");
    await ledger.verdict(
      "rolling kills",
      `kill -9 a random worker every ~2 s (${kills} kills)`,
      inFlight,
    );
  } finally {
    await Promise.all(workers.map((w) => w[Symbol.asyncDispose]()));
  }
});

Deno.test("kill -9 of a worker holding 1 running + 50 prefetched: all reclaimed, none dead", async () => {
  await using redis = await startRedis();
  await using ledger = await Ledger.start();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const holder = new WorkerProcess(redis.url, {
    ledger: ledger.url,
    concurrency: 1,
    prefetch: 50,
    idle: 1_000,
  });
  let peer: WorkerProcess | undefined;
  try {
    await holder.waitFor((e) => e.ev === "ready", "ready");
    await enqueue(queue, ledger, work(60, 300));
    await holder.waitFor((e) => e.ev === "started", "a start");
    await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 51, "51 held");
    assert.equal(await ledger.committed(), 0, "killed before its first job committed");
    holder.signal("SIGKILL");
    await holder[Symbol.asyncDispose]();
    peer = new WorkerProcess(redis.url, {
      ledger: ledger.url,
      concurrency: 20,
      prefetch: 0,
      idle: 1_000,
    });
    await ledger.waitForCommits(60);
    const redelivered = (await ledger.log()).filter((c) => c.deliveries === 2);
    assert.equal(redelivered.length, 51, "the 51 held jobs came back with deliveries 2");
    await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 0, "pending 0");
    assert.equal(await db.xlen(queue.keys.dead), 0, "none dead-lettered because of the kill");
    await ledger.verdict("kill with prefetch", "kill -9 a worker holding 1 + 50 prefetched", 51);
  } finally {
    await holder[Symbol.asyncDispose]();
    await peer?.[Symbol.asyncDispose]();
  }
});

Deno.test("SIGSTOP past idleTimeout: a peer completes the job, the stale holder cannot steal it back", async () => {
  await using redis = await startRedis();
  await using ledger = await Ledger.start();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const options = { ledger: ledger.url, concurrency: 1, prefetch: 0, idle: 1_000 };
  const stale = new WorkerProcess(redis.url, options);
  let peer: WorkerProcess | undefined;
  try {
    await stale.waitFor((e) => e.ev === "ready", "ready");
    await enqueue(queue, ledger, work(1, 400, "slow"));
    await stale.waitFor((e) => e.ev === "started", "the start");
    stale.signal("SIGSTOP");
    peer = new WorkerProcess(redis.url, options);
    await ledger.waitForCommits(1);
    const [first] = await ledger.log();
    assert.equal(first!.deliveries, 2, "the peer ran it as the second delivery");
    await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 0, "settled");
    stale.signal("SIGCONT");
    // The stale holder learns it lost the lease: its signal aborts or its ack is refused.
    await stale.waitFor(
      (e) => (e.ev === "aborted" && e.reason === "LeaseLostError") || e.ev === "error",
      "the lost lease",
    );
    await enqueue(queue, ledger, work(20, 1, "after"));
    await ledger.waitForCommits(21);
    const again = (await ledger.log()).filter((c) => c.id === "slow0" && c.deliveries > 2);
    assert.deepEqual(again, [], "no steal-back: no third delivery");
    await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 0, "settled");
    await ledger.verdict("lease loss", "SIGSTOP a worker past idleTimeout, then SIGCONT", 1);
  } finally {
    stale.signal("SIGCONT");
    await stale[Symbol.asyncDispose]();
    await peer?.[Symbol.asyncDispose]();
  }
});

Deno.test("kill -9 of a worker holding jobs of 3 priorities: a peer reclaims each from its own stream, none lost", async () => {
  await using redis = await startRedis();
  await using ledger = await Ledger.start();
  const priorities = ["bulk", "normal", "urgent"];
  await using queue = new Queue("q", { redis: redis.url, priorities });
  await using db = inspect(redis.url);
  const streams = [queue.keys.stream, queue.keys.lane("normal"), queue.keys.lane("urgent")];
  const pending = async () =>
    (await Promise.all(streams.map((s) => pendingCount(db, s)))).reduce((a, b) => a + b);
  // 20 jobs of each priority; ids start with their priority's name.
  for (const priority of priorities) {
    const jobs = work(20, 300, priority).map((job) => ({ ...job, priority }));
    await enqueue(queue, ledger, jobs);
  }
  const options = { ledger: ledger.url, priorities: priorities.join(","), idle: 1_000 };
  // Its window (1 + 50) is more than two priorities' jobs: it holds some of each.
  const holder = new WorkerProcess(redis.url, { ...options, concurrency: 1, prefetch: 50 });
  let peer: WorkerProcess | undefined;
  try {
    await holder.waitFor((e) => e.ev === "started", "a start");
    await waitForRedis(async () => (await pending()) === 51, "51 held");
    const held = await Promise.all(streams.map((s) => pendingCount(db, s)));
    assert.ok(held.every((n) => n > 0), `held of each priority, lowest first: ${held}`);
    assert.equal(await ledger.committed(), 0, "killed before its first job committed");
    holder.signal("SIGKILL");
    await holder[Symbol.asyncDispose]();
    peer = new WorkerProcess(redis.url, { ...options, concurrency: 20, prefetch: 0 });
    await ledger.waitForCommits(60);
    const log = await ledger.log();
    for (const commit of log) {
      assert.ok(
        commit.id.startsWith(commit.priority ?? "?"),
        `${commit.id} ran as ${commit.priority}`,
      );
    }
    const redelivered = log.filter((c) => c.deliveries === 2);
    assert.equal(redelivered.length, 51, "the 51 held jobs came back with deliveries 2");
    assert.deepEqual(new Set(redelivered.map((c) => c.priority)), new Set(priorities));
    await waitForRedis(async () => (await pending()) === 0, "pending 0 on every stream");
    assert.equal(await db.xlen(queue.keys.dead), 0, "none dead-lettered because of the kill");
    await ledger.verdict(
      "kill with priorities",
      "kill -9 a worker holding 1 + 50 jobs of 3 priorities",
      51,
    );
  } finally {
    await holder[Symbol.asyncDispose]();
    await peer?.[Symbol.asyncDispose]();
  }
});

/** Cron and interval schedules: exactly once per tick across workers, catch-up, overlap. */
import assert from "node:assert/strict";
import type { Redis } from "ioredis";
import { Queue, type QueueOptions, task, ValidationError, Worker } from "../mod.ts";
import { startCluster, startRedis } from "../src/testing.ts";
import { dueTicks, nextTick, type Spec } from "../src/schedule.ts";
import { inspect, waitForRedis, WorkerProcess } from "./_helpers.ts";

const quiet = { info() {}, warn() {}, error() {} };
const options = (redis: NonNullable<QueueOptions["redis"]>) => ({
  redis,
  handleSignals: false,
  logger: quiet,
});
/** Waits for a condition on what the workers saw (not on Redis), with a deadline. */
const until = (check: () => boolean, what: string, timeout?: number) =>
  waitForRedis(() => Promise.resolve(check()), what, timeout);
/** The tick ms of a job id `<schedule>@<ms>`. */
const tickOf = (id: string) => Number(id.slice(id.lastIndexOf("@") + 1));
/** Redis's clock, ms (whole seconds): ticks are judged on it. */
const redisNow = async (db: Redis) => Number((await db.time())[0]) * 1_000;
/** Waits until Redis's clock reads `ms` or later. */
const untilRedisTime = (db: Redis, ms: number, what: string) =>
  waitForRedis(async () => await redisNow(db) >= ms, what, 10_000);

/** Runs a worker that records the ids of the jobs it completes; returns them and a stop(). */
function running(worker: Worker, ids: string[] = []) {
  worker.addEventListener("completed", (e) => ids.push(e.detail.job.id));
  const run = worker.run();
  return {
    ids,
    async stop() {
      await worker.stop();
      await run;
    },
  };
}

Deno.test("every: 500 for 3 s fires 6 ± 1 jobs, ids <schedule>@<tick> 500 ms apart", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const ping = task("ping", () => 1);
  await queue.schedules.upsert("ping", { every: 500, task: ping });
  const [info] = await queue.schedules.list();
  const first = info!.next!.getTime();
  const w = running(new Worker("q", [ping], options(redis.url)));
  await using db = inspect(redis.url);
  // Wait until Redis's clock is 3 s past the first tick, then for the tick due then to run.
  await untilRedisTime(db, first + 3_000, "3 s of ticks");
  await until(
    () => w.ids.some((id) => tickOf(id) >= first + 2_500),
    "the 6th tick",
    5_000,
  );
  await w.stop();
  const ticks = w.ids.filter((id) => tickOf(id) < first + 3_000).map(tickOf).sort();
  assert.ok(ticks.length >= 5 && ticks.length <= 7, `${ticks.length} runs: ${ticks}`);
  assert.equal(ticks[0], first);
  for (let i = 1; i < ticks.length; i++) assert.equal(ticks[i]! - ticks[i - 1]!, 500);
  assert.ok(w.ids.every((id) => id.startsWith("ping@")), w.ids.join());
});

Deno.test("cron every second, three worker processes: each tick once, consecutive, through a kill -9", async () => {
  await using redis = await startRedis();
  const args = { queue: "q", cron: "* * * * * *", idle: 2_000 };
  await using a = new WorkerProcess(redis.url, args);
  await using b = new WorkerProcess(redis.url, args);
  await using c = new WorkerProcess(redis.url, args);
  const all = [a, b, c];
  const ticks = () => all.flatMap((w) => w.events.filter((e) => e.ev === "completed"));
  const total = () => ticks().length;
  // Two seconds of ticks, then one worker is killed, then three more seconds.
  await Promise.all(all.map((w) => w.waitFor((e) => e.ev === "ready", "ready")));
  await until(() => total() >= 2, "2 ticks", 15_000);
  a.child.kill("SIGKILL");
  await a.status;
  const before = total();
  await until(() => total() >= before + 4, "4 more ticks", 15_000);
  await using queue = new Queue("q", { redis: redis.url });
  assert.equal((await queue.schedules.list()).length, 1, "three declarations, one schedule");
  const ids = ticks().map((e) => e.id as string);
  assert.equal(new Set(ids).size, ids.length, `a tick ran twice: ${ids}`);
  const seconds = ids.map(tickOf).sort();
  for (let i = 1; i < seconds.length; i++) {
    assert.equal(seconds[i]! - seconds[i - 1]!, 1_000, `ticks not consecutive: ${seconds}`);
  }
  assert.ok(seconds.every((t) => t % 1_000 === 0), "whole seconds");
  assert.ok(ids.every((id) => id.startsWith("tick@")));
});

Deno.test("an upsert that changes the cron takes effect for the next tick, and remove stops ticks", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const t = task("t", () => 1);
  assert.equal(await queue.schedules.upsert("s", { cron: "0 0 1 1 *", task: t }), "created");
  assert.equal(await queue.schedules.upsert("s", { cron: "0 0 1 1 *", task: t }), "unchanged");
  const w = running(new Worker("q", [t], options(redis.url)));
  await using db = inspect(redis.url);
  // The worker sleeps (its next tick is next year) until the upsert wakes it.
  await waitForRedis(async () => /blocked_clients:1/.test(await db.info("clients")), "asleep");
  const yearly = (await queue.schedules.list())[0]!.next!.getTime();
  assert.ok(yearly - Date.now() > 1_000, "next new year");
  assert.equal(await queue.schedules.upsert("s", { cron: "* * * * * *", task: t }), "replaced");
  const next = (await queue.schedules.list())[0]!.next!.getTime();
  assert.ok(next - Date.now() <= 1_500, `next tick within a second, got ${next - Date.now()}`);
  await until(() => w.ids.length >= 2, "2 ticks of the new cron", 10_000);
  assert.equal(await queue.schedules.remove("s"), true);
  assert.equal(await queue.schedules.remove("s"), false);
  assert.deepEqual(await queue.schedules.list(), []);
  const count = w.ids.length;
  // A tick fired just before the remove may still run; none after that one.
  const last = Math.max(...w.ids.map(tickOf));
  await untilRedisTime(db, last + 2_500, "2 more seconds");
  await w.stop();
  assert.ok(w.ids.length <= count + 1, `ticks after remove: ${w.ids.slice(count)}`);
  assert.equal(await db.zcard(queue.keys.ticks), 0);
});

for (const catchUp of ["latest", "none"] as const) {
  Deno.test(`catchUp "${catchUp}": 3 ticks missed while no worker ran`, async () => {
    await using redis = await startRedis();
    await using queue = new Queue("q", { redis: redis.url });
    await using db = inspect(redis.url);
    const t = task("t", () => 1);
    await queue.schedules.upsert("s", { cron: "* * * * * *", task: t, catchUp });
    const first = running(new Worker("q", [t], options(redis.url)));
    await until(() => first.ids.length >= 1, "a tick", 10_000);
    await first.stop();
    const stoppedAfter = Math.max(...first.ids.map(tickOf));
    await untilRedisTime(db, stoppedAfter + 4_000, "4 s");
    const restart = await redisNow(db);
    const second = running(new Worker("q", [t], options(redis.url)));
    // Wait until an on-time tick after the restart has run: catch-up came before it.
    await until(() => second.ids.some((id) => tickOf(id) > restart), "a tick", 10_000);
    await second.stop();
    const missed = second.ids.map(tickOf).filter((t) => t > stoppedAfter && t <= restart);
    const old = missed.filter((t) => t < restart - 1_000);
    if (catchUp === "latest") {
      assert.equal(missed.length, 1, `one catch-up job, got ${missed}`);
      assert.ok(missed[0]! >= restart - 1_000, "for the latest missed tick");
    } else {
      assert.deepEqual(old, [], "no job for the missed ticks");
    }
  });
}

Deno.test("overlap: false skips ticks while the last job is unfinished, and counts them", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const release = Promise.withResolvers<void>();
  const ids: string[] = [];
  const slow = task("slow", async (_: null, ctx) => {
    ids.push(ctx.job.id);
    await release.promise;
  });
  await queue.schedules.upsert("s", { every: 200, task: slow, overlap: false });
  const w = running(new Worker("q", [slow], { ...options(redis.url), concurrency: 4 }));
  await waitForRedis(
    async () => (await queue.schedules.list())[0]!.skipped >= 3,
    "3 skips",
    10_000,
  );
  assert.equal(ids.length, 1, `one job ran while the first was unfinished: ${ids}`);
  release.resolve();
  await until(() => ids.length >= 2, "a tick after the job ended", 10_000);
  await w.stop();
  const [s] = await queue.schedules.list();
  assert.ok(s!.lastJob!.startsWith("s@"));
  assert.ok(new Set(ids).size === ids.length);
});

Deno.test("cron in a time zone with a half-hour offset and DST: the right next times", () => {
  const spec = (cron: string, tz: string): Spec => ({
    task: "t",
    cron,
    every: null,
    tz,
    data: "null",
    catchUp: "latest",
    overlap: true,
  });
  // Kolkata is UTC+5:30 all year: 09:00 there is 03:30 UTC.
  const kolkata = spec("0 9 * * *", "Asia/Kolkata");
  const at = nextTick(kolkata, Date.UTC(2024, 0, 1, 12));
  assert.equal(new Date(at!).toISOString(), "2024-01-02T03:30:00.000Z");
  // Adelaide: UTC+9:30, then UTC+10:30 from 02:00 local on 6 October 2024 (DST starts).
  const adelaide = spec("0 9 * * *", "Australia/Adelaide");
  const runs = dueTicks(
    adelaide,
    nextTick(adelaide, Date.UTC(2024, 9, 3))!,
    Date.UTC(2024, 9, 8),
    10,
  );
  assert.deepEqual(runs.map((t) => new Date(t).toISOString()), [
    "2024-10-03T23:30:00.000Z",
    "2024-10-04T23:30:00.000Z",
    "2024-10-05T22:30:00.000Z",
    "2024-10-06T22:30:00.000Z",
    "2024-10-07T22:30:00.000Z",
  ]);
  // And back: DST ends at 03:00 local on 6 April 2025.
  const back = nextTick(adelaide, Date.UTC(2025, 3, 5, 12));
  assert.equal(new Date(back!).toISOString(), "2025-04-05T23:30:00.000Z");
  assert.equal(new Date(nextTick(adelaide, back!)!).toISOString(), "2025-04-06T23:30:00.000Z");
});

Deno.test("bad schedules throw ValidationError naming the action, the reason and the value", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const cases: [unknown, unknown, RegExp][] = [
    ["s", { cron: "61 * * * *", task: "t" }, /cron must be a valid cron expression, got "61/],
    ["s", { cron: "* *", task: "t" }, /cron must be a string of 5 or 6 fields, got "\* \*"/],
    ["s", { cron: "* * * * *", tz: "Mars/Olympus", task: "t" }, /tz must be .* "Mars\/Olympus"/],
    ["s", { every: 0, task: "t" }, /every must be an integer from 1 .*, got 0/],
    ["s", { every: 1.5, task: "t" }, /every must be an integer .*, got 1.5/],
    ["s", { every: 1e15, task: "t" }, /every must be an integer .*, got 1000000000000000/],
    ["s", { cron: "* * * * *", every: 5, task: "t" }, /give cron or every, not both/],
    ["s", { task: "t" }, /give cron or every, got/],
    ["s", { every: 5, task: "t", catchUp: "some" }, /catchUp must be .*, got "some"/],
    ["a@b", { every: 5, task: "t" }, /id must be 1 to 180 .*, got "a@b"/],
    ["s", { every: 5, task: "a{b}" }, /task must be a task or a task name, got "a{b}"/],
  ];
  for (const [id, opts, message] of cases) {
    await assert.rejects(
      () => queue.schedules.upsert(id as string, opts as { task: string; every: number }),
      (err: Error) => {
        assert.ok(err instanceof ValidationError, `${err}`);
        assert.match(err.message, /^Cannot upsert schedule /);
        assert.match(err.message, message);
        return true;
      },
    );
  }
  assert.throws(() => task("t", () => 1, { every: -1 }), /Cannot define task t: every must be/);
  assert.deepEqual(await queue.schedules.list(), [], "nothing was stored");
});

Deno.test("schedules on Redis Cluster: ticks fire once on the queue's slot", async () => {
  await using cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
  const redis = { cluster: cluster.urls };
  await using queue = new Queue("q", { redis });
  const t = task("t", () => 1);
  await queue.schedules.upsert("s", { every: 300, task: t });
  const a = running(new Worker("q", [t], options(redis)));
  const b = running(new Worker("q", [t], options(redis)), a.ids);
  await until(() => a.ids.length >= 4, "4 ticks", 15_000);
  await queue.schedules.pause("s");
  assert.equal((await queue.schedules.list())[0]!.paused, true);
  const job = await queue.schedules.trigger("s");
  assert.match(job!, /^s@trigger:/);
  await until(() => a.ids.includes(job!), "the triggered job", 15_000);
  await Promise.all([a.stop(), b.stop()]);
  assert.equal(new Set(a.ids).size, a.ids.length, `a tick ran twice: ${a.ids}`);
});

/**
 * Groups across worker processes, with every handler's run counted in a ledger kept in a Redis
 * of its own: per-group concurrency over 3 workers, and kill -9 of a worker holding grouped
 * jobs, after which every group's room comes back.
 */
import assert from "node:assert/strict";
import { Queue } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { inspect, waitForRedis, WorkerProcess } from "./_helpers.ts";
import { queueKeys } from "../src/keys.ts";
import { activeGroups } from "../src/groups.ts";
import { defineScripts } from "../src/scripts/mod.ts";

const GROUPS = ["g0", "g1", "g2", "g3", "g4"];

Deno.test("3 worker processes at concurrency 10, groups.concurrency 2, 5 groups of 100 jobs: never more than 2 running per group", async () => {
  await using redis = await startRedis();
  await using ledgerRedis = await startRedis();
  await using ledger = inspect(ledgerRedis.url);
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  const options = { ledger: ledgerRedis.url, groups: 2, concurrency: 10, prefetch: 10 };
  await using a = new WorkerProcess(redis.url, options);
  await using b = new WorkerProcess(redis.url, options);
  await using c = new WorkerProcess(redis.url, options);
  const workers = [a, b, c];
  // Each worker stores groups.concurrency as it starts, before it reads.
  await waitForRedis(
    async () => (await db.hget(queue.keys.groups, "c")) === "2",
    "groups.concurrency stored",
  );
  const n = 500;
  for (const group of GROUPS) {
    await queue.enqueueMany(
      "grouped",
      Array.from({ length: n / GROUPS.length }, () => ({ data: { ms: 20 }, group })),
    );
  }
  const completed = () => workers.reduce((sum, w) => sum + w.count("completed"), 0);
  await waitForRedis(() => Promise.resolve(completed() >= n), `${n} completed`, 60_000);
  const commits = await ledger.hgetall("commits");
  assert.equal(Object.keys(commits).length, n, "every job committed");
  assert.ok(Object.values(commits).every((c) => c === "1"), "each once");
  const most = await ledger.hgetall("most");
  assert.deepEqual(Object.keys(most).sort(), GROUPS);
  for (const group of GROUPS) {
    assert.ok(Number(most[group]) <= 2, `group ${group} ran ${most[group]} at once`);
  }
  // The limit was reached, not just never needed.
  assert.ok(Object.values(most).some((m) => m === "2"), JSON.stringify(most));
  // Jobs spread over the workers.
  assert.ok(workers.filter((w) => w.count("completed") > 0).length >= 2);
  for (const w of workers) assert.equal(w.count("retrying") + w.count("dead"), 0, w.log());
  assert.deepEqual(await queue.groups.list(), []);
});

Deno.test("kill -9 of a worker holding grouped jobs: they are reclaimed and run, and every group's room comes back", async () => {
  await using redis = await startRedis();
  await using ledgerRedis = await startRedis();
  await using ledger = inspect(ledgerRedis.url);
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  const keys = queueKeys("q", "sluice");
  const options = {
    ledger: ledgerRedis.url,
    groups: 2,
    concurrency: 10,
    prefetch: 10,
    idle: 1_000,
  };
  await using victim = new WorkerProcess(redis.url, options);
  await waitForRedis(async () => (await db.hget(keys.groups, "c")) === "2", "stored");
  const n = 60;
  for (const group of GROUPS.slice(0, 3)) {
    await queue.enqueueMany(
      "grouped",
      Array.from({ length: n / 3 }, () => ({ data: { ms: 200 }, group })),
    );
  }
  // The victim holds 2 jobs of each group (all their room) when it dies.
  await victim.waitForCount("started", 6);
  // Each group's state: 2 in the stream each, 18 waiting.
  const held = await activeGroups(defineScripts(db), keys);
  for (const group of GROUPS.slice(0, 3)) {
    assert.deepEqual(held.get(group), { running: 2, waiting: 18 }, group);
  }
  victim.signal("SIGKILL");
  await victim.status;
  await using rescuer = new WorkerProcess(redis.url, options);
  // Reclaim hands the dead worker's jobs (and their room) over; the lines drain behind them.
  await waitForRedis(
    async () => Object.keys(await ledger.hgetall("commits")).length === n,
    `${n} committed`,
    60_000,
  );
  const stats = await queue.stats();
  assert.equal(stats.dead, 0);
  assert.ok(rescuer.count("completed") > 0);
  // Lost = 0, and nothing stays counted: the groups are empty and have all their room.
  const commits = await ledger.hgetall("commits");
  assert.equal(Object.keys(commits).length, n);
  await waitForRedis(
    async () => (await db.hlen(keys.groupLines)) === 0,
    "every group's running count back to 0",
  );
  assert.equal(await db.hlen(keys.groupSlots), 0);
  assert.equal(await db.hlen(keys.groupJobs), 0);
  assert.deepEqual(await db.hgetall(keys.groupLines), {});
  // The reclaimed jobs ran a second time at most, never beyond the group's limit.
  const most = await ledger.hgetall("most");
  for (const group of GROUPS.slice(0, 3)) {
    // The victim's handlers never reached their DECR: its 2 per group stay counted in the
    // ledger, so the rescuer's own runs add at most 2 to them.
    assert.ok(Number(most[group]) <= 4, `group ${group}: ${most[group]}`);
  }
});

/**
 * The admin API: jobs by state in pages, find by id and prefix, listQueues, and the bulk
 * actions (retry dead letters, drain, clean, obliterate), on a real Redis and on Redis Cluster.
 */
import assert from "node:assert/strict";
import {
  CancelledError,
  type JobSummary,
  listQueues,
  type ListState,
  Queue,
  SluiceError,
  task,
  Worker,
} from "../mod.ts";
import { startCluster, startRedis } from "../src/testing.ts";
import { inspect, waitForRedis } from "./_helpers.ts";

/** Every job of a state, page by page: the ids, and how many pages it took. */
async function all(
  queue: Queue,
  state: ListState,
  options: { limit?: number; task?: string; group?: string } = {},
): Promise<{ jobs: JobSummary[]; pages: number }> {
  const jobs: JobSummary[] = [];
  let cursor: string | undefined, pages = 0;
  do {
    const page = await queue.jobs(state, { ...options, ...(cursor ? { cursor } : {}) });
    assert.ok(page.jobs.length <= (options.limit ?? 50), `a page of ${state} holds at most limit`);
    jobs.push(...page.jobs);
    cursor = page.cursor;
    pages++;
  } while (cursor !== undefined);
  return { jobs, pages };
}

const ids = (jobs: readonly JobSummary[]) => jobs.map((j) => j.id).sort();

/** Runs jobs to an end with a worker: "ok" completes, "bad" dies at once. */
async function settle(url: string, name: string, n: number): Promise<void> {
  const ok = task("ok", (x: number) => x);
  const bad = task("bad", () => {
    throw new Error("boom");
  }, { retry: { attempts: 1 } });
  await using worker = new Worker(name, [ok, bad], { redis: url, handleSignals: false });
  let ended = 0;
  const { promise, resolve } = Promise.withResolvers<void>();
  const count = () => ++ended === n && resolve();
  worker.addEventListener("completed", count);
  worker.addEventListener("dead", count);
  const run = worker.run();
  await promise;
  await worker.stop();
  await run;
}

Deno.test("jobs() lists every state in pages, with filters, and find() finds by id and prefix", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  // Ended jobs: 4 completed, 3 dead, 2 cancelled.
  await queue.enqueueMany("ok", [1, 2, 3, 4].map((n) => ({ data: n, id: `ok-${n}` })));
  await queue.enqueueMany("bad", [1, 2, 3].map((n) => ({ data: n, id: `bad-${n}` })));
  await settle(redis.url, "q", 7);
  for (const n of [1, 2]) {
    await queue.enqueue("x", n, { id: `gone-${n}`, delay: 60_000 });
    await queue.job(`gone-${n}`).cancel();
  }
  // Waiting: 12 of two tasks; delayed: 5; active: 3 held by a consume() stream.
  await queue.enqueueMany("held", [1, 2, 3].map((n) => ({ data: n, id: `held-${n}` })));
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal, prefetch: 3 }).getReader();
  for (let i = 0; i < 3; i++) assert.equal((await reader.read()).value?.task, "held");
  await queue.enqueueMany("a", Array.from({ length: 8 }, (_, i) => ({ data: i, id: `a-${i}` })));
  await queue.enqueueMany("b", Array.from({ length: 4 }, (_, i) => ({ data: i, id: `b-${i}` })));
  await queue.enqueueMany(
    "later",
    Array.from({ length: 5 }, (_, i) => ({ data: i, id: `d-${i}`, delay: 60_000 + i })),
  );

  const waiting = await all(queue, "waiting", { limit: 5 });
  assert.equal(waiting.jobs.length, 12);
  assert.ok(waiting.pages >= 3, `paged: ${waiting.pages}`);
  assert.deepEqual(
    ids(waiting.jobs),
    [
      ...Array.from({ length: 8 }, (_, i) => `a-${i}`),
      ...Array.from({ length: 4 }, (_, i) => `b-${i}`),
    ].sort(),
  );
  assert.deepEqual(waiting.jobs.map((j) => j.id).slice(0, 2), ["a-0", "a-1"], "stream order");
  assert.equal(waiting.jobs[0]!.data, "0");
  assert.equal(waiting.jobs[0]!.attempt, 1);
  assert.deepEqual(ids((await all(queue, "waiting", { task: "b", limit: 3 })).jobs), [
    "b-0",
    "b-1",
    "b-2",
    "b-3",
  ]);

  const active = await all(queue, "active", { limit: 2 });
  assert.deepEqual(ids(active.jobs), ["held-1", "held-2", "held-3"]);
  assert.ok(active.jobs.every((j) => j.worker && j.deliveries === 1 && j.idleMs! >= 0));

  const delayed = await all(queue, "delayed", { limit: 2 });
  assert.deepEqual(delayed.jobs.map((j) => j.id), ["d-0", "d-1", "d-2", "d-3", "d-4"]);
  assert.ok(delayed.jobs.every((j, i, a) => i === 0 || j.dueAt! >= a[i - 1]!.dueAt!));

  const dead = await all(queue, "dead", { limit: 2 });
  assert.deepEqual(ids(dead.jobs), ["bad-1", "bad-2", "bad-3"]);
  assert.ok(dead.jobs.every((j) => j.reason === "failed" && j.error!.includes("boom")));
  assert.ok(dead.jobs.every((j) => j.deadId && j.finishedAt! > 0));

  const completed = await all(queue, "completed", { limit: 2 });
  assert.deepEqual(ids(completed.jobs), ["ok-1", "ok-2", "ok-3", "ok-4"]);
  assert.ok(completed.jobs.every((j) => j.task === "ok" && j.finishedAt! > 0 && j.worker));
  assert.deepEqual(ids((await all(queue, "cancelled")).jobs), ["gone-1", "gone-2"]);
  assert.deepEqual((await all(queue, "completed", { task: "nope" })).jobs, []);

  // find: an exact id, a prefix, and nothing.
  const [exact] = await queue.find("a-3");
  assert.equal(exact?.state, "waiting");
  assert.deepEqual((await queue.find("held-")).map((s) => s.state), ["active", "active", "active"]);
  assert.deepEqual(
    (await queue.find("ok-", { limit: 2 })).length,
    2,
  );
  assert.deepEqual(await queue.find("zzz"), []);
  controller.abort();
  await reader.cancel().catch(() => {});
});

Deno.test("jobs() covers every priority's stream and the groups' lines, even from a queue made without them", async () => {
  await using redis = await startRedis();
  await using producer = new Queue("p", {
    redis: redis.url,
    priorities: ["low", "high"],
  });
  await producer.enqueue("t", 1, { id: "l1", priority: "low" });
  await producer.enqueue("t", 2, { id: "h1", priority: "high" });
  await using grouped = new Queue("g", { redis: redis.url });
  await grouped.groups.set("tenant", { concurrency: 1 });
  await grouped.enqueueMany(
    "t",
    [1, 2, 3].map((n) => ({ data: n, id: `g${n}`, group: "tenant" })),
  );
  // A Queue made with no priorities still lists both streams, highest first.
  await using plain = new Queue("p", { redis: redis.url });
  const { jobs } = await all(plain, "waiting");
  assert.deepEqual(jobs.map((j) => [j.id, j.priority]), [["h1", "high"], ["l1", "low"]]);
  // One grouped job is in the stream; two wait in the line; all three are waiting.
  const g = await all(grouped, "waiting", { group: "tenant", limit: 1 });
  assert.deepEqual(ids(g.jobs), ["g1", "g2", "g3"]);
  assert.ok(g.jobs.every((j) => j.group === "tenant" && j.task === "t" && j.data !== undefined));
  assert.deepEqual((await all(grouped, "waiting", { group: "other" })).jobs, []);
});

Deno.test("retry('dead') replays the letters that match, once, and keeps the rest", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueueMany("bad", [1, 2, 3].map((n) => ({ data: n, id: `bad-${n}` })));
  await settle(redis.url, "q", 3);
  assert.equal(await queue.retry("dead", { task: "other" }), 0);
  assert.equal(await queue.retry("dead", { id: "bad-2" }), 1);
  assert.equal(await queue.dead.count(), 2);
  assert.equal((await queue.job("bad-2").info())?.state, "waiting");
  const progress: number[] = [];
  assert.equal(await queue.retry("dead", { onProgress: (n) => progress.push(n) }), 2);
  assert.deepEqual(progress, [2]);
  assert.equal(await queue.dead.count(), 0);
  assert.deepEqual(ids((await all(queue, "waiting")).jobs), ["bad-1", "bad-2", "bad-3"]);
  assert.ok((await all(queue, "waiting")).jobs.every((j) => j.attempt === 1));
});

Deno.test("drain() ends waiting and delayed jobs as cancelled; held jobs, dead letters and raw entries are handled", async () => {
  await using redis = await startRedis();
  await using raw = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueueMany("bad", [{ data: 1, id: "bad-1" }]);
  await settle(redis.url, "q", 1);
  await queue.enqueueMany("held", [1, 2].map((n) => ({ data: n, id: `held-${n}` })));
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal, prefetch: 2 }).getReader();
  const held = [(await reader.read()).value!, (await reader.read()).value!];
  await queue.enqueueMany(
    "w",
    Array.from({ length: 1_200 }, (_, i) => ({ data: i, id: `w-${i}` })),
  );
  await queue.enqueueMany("d", [1, 2, 3].map((n) => ({ data: n, id: `d-${n}`, delay: 60_000 })));
  await queue.groups.set("t1", { concurrency: 1 });
  await queue.enqueueMany("g", [1, 2, 3].map((n) => ({ data: n, id: `g-${n}`, group: "t1" })));
  // An entry written by hand, with no record; a webhook delivery waiting to be tried again.
  await raw.xadd(queue.keys.stream, "*", "v", "1", "id", "raw-1", "task", "w", "data", "0");
  const hook = [
    "v",
    "1",
    "id",
    "webhook:x",
    "task",
    "sluice.webhook",
    "data",
    "{}",
    "attempt",
    "2",
  ];
  await raw.zadd(queue.keys.delayed, Date.now() + 60_000, "webhook:x");
  await raw.hset(queue.keys.payloads, "webhook:x", JSON.stringify(hook));
  const waiter = assert.rejects(queue.job("w-5").result(), CancelledError);
  const events = queue.events({ signal: controller.signal, since: "$" }).getReader();
  const progress: number[] = [];
  const counts = await queue.drain({ onProgress: (n) => progress.push(n) });
  assert.deepEqual(counts, { waiting: 1_204, delayed: 3 });
  assert.ok(progress.length >= 4 && progress.at(-1) === 1_207, String(progress));
  await waiter;
  assert.equal((await queue.job("d-2").info())?.state, "cancelled");
  assert.equal((await queue.job("g-3").info())?.state, "cancelled");
  const stats = await queue.stats();
  assert.deepEqual([stats.waiting, stats.delayed, stats.active, stats.dead], [0, 1, 2, 1]);
  assert.notEqual(await raw.zscore(queue.keys.delayed, "webhook:x"), null, "the delivery stays");
  assert.deepEqual((await queue.groups.list()).filter((g) => g.waiting > 0), []);
  // The held jobs finish as usual.
  for (const job of held) await job.ack(null);
  assert.equal((await queue.job("held-1").info())?.state, "completed");
  let cancelled = 0;
  while (cancelled < 1_207) {
    const { value } = await events.read();
    if (value?.type === "cancelled") cancelled++;
  }
  assert.equal(cancelled, 1_207);
  controller.abort();
  await Promise.all([reader.cancel().catch(() => {}), events.cancel().catch(() => {})]);
});

Deno.test("clean() deletes old finished records and dead letters; obliterate() refuses live workers unless forced", async () => {
  await using redis = await startRedis();
  await using raw = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  await using other = new Queue("other", { redis: redis.url });
  await other.enqueue("t", 1);
  await queue.enqueueMany("ok", [1, 2, 3].map((n) => ({ data: n, id: `ok-${n}` })));
  await queue.enqueueMany("bad", [1, 2].map((n) => ({ data: n, id: `bad-${n}` })));
  await settle(redis.url, "q", 5);
  assert.equal(await queue.clean("completed", { olderThan: 3_600_000 }), 0);
  assert.equal(await queue.clean("dead", { olderThan: 3_600_000 }), 0);
  assert.equal(await queue.clean("completed", { olderThan: 0 }), 3);
  assert.equal(await queue.job("ok-1").info(), undefined);
  assert.equal((await queue.job("bad-1").info())?.state, "dead", "dead records stay");
  assert.equal(await queue.clean("dead", { olderThan: 0 }), 2);
  assert.equal(await queue.dead.count(), 0);

  await queue.enqueue("t", 1, { delay: 60_000 });
  await using worker = new Worker("q", [task("t", () => {})], {
    redis: redis.url,
    handleSignals: false,
  });
  const run = worker.run();
  await waitForRedis(async () => (await queue.workers()).length === 1, "a live worker");
  await assert.rejects(queue.obliterate(), (err: Error) => {
    assert.ok(err instanceof SluiceError);
    assert.match(err.message, /Cannot obliterate queue q: 1 live worker is attached/);
    return true;
  });
  assert.equal((await queue.stats()).delayed, 1, "nothing deleted");
  await worker.stop();
  await run;
  assert.ok(await queue.obliterate() > 0);
  const left = await raw.keys("sluice:{q}:*");
  assert.deepEqual(left, []);
  assert.equal((await other.stats()).waiting, 1, "another queue is untouched");
});

Deno.test("listQueues() finds every queue under a prefix with its counts and workers", async () => {
  await using redis = await startRedis();
  await using a = new Queue("alpha", { redis: redis.url });
  await using b = new Queue("beta", { redis: redis.url });
  await using c = new Queue("gamma", { redis: redis.url, prefix: "other" });
  await a.enqueueMany("t", [{ data: 1 }, { data: 2 }]);
  await b.enqueue("t", 1, { delay: 60_000 });
  await b.pause();
  await c.enqueue("t", 1);
  const found = await listQueues(redis.url);
  assert.deepEqual(found.map((q) => q.name), ["alpha", "beta"]);
  assert.deepEqual(
    found.map((q) => [q.stats.waiting, q.stats.delayed, q.stats.paused, q.workers.length]),
    [[2, 0, false, 0], [0, 1, true, 0]],
  );
  assert.deepEqual((await listQueues(redis.url, { prefix: "other" })).map((q) => q.name), [
    "gamma",
  ]);
});

Deno.test("admin API: bad input gets an error naming the action, the rule and the value", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const cases: [() => Promise<unknown>, RegExp][] = [
    [() => queue.jobs("nope" as ListState), /Cannot list "nope" jobs: the state must be one of/],
    [() => queue.jobs("waiting", { limit: 0 }), /limit must be an integer .*got 0/],
    [() => queue.jobs("waiting", { limit: 1_001 }), /limit .*got 1001/],
    [() => queue.jobs("waiting", { limit: 1.5 }), /limit .*got 1.5/],
    [() => queue.jobs("waiting", { task: "" }), /task must be a non-empty string, got ""/],
    [() => queue.jobs("dead", { cursor: "waiting:0:1-1" }), /is not a cursor of this state/],
    [() => queue.jobs("dead", { cursor: "dead:xyz" }), /the cursor "xyz" is damaged/],
    [() => queue.jobs("waiting", { cursor: "waiting:-1:1-1" }), /the cursor "-1:1-1" is damaged/],
    [() => queue.jobs("active", { cursor: "active:0:nope" }), /the cursor "0:nope" is damaged/],
    [() => queue.find(""), /Cannot find jobs: the id or prefix must be a non-empty string/],
    [() => queue.retry("waiting" as "dead"), /only "dead" jobs can be retried, got "waiting"/],
    [() => queue.retry("dead", { task: 3 as unknown as string }), /task must be .*got 3/],
    [() => queue.clean("dead", { olderThan: -1 }), /olderThan must be an integer .*got -1/],
    [() => queue.clean("waiting" as "dead", { olderThan: 0 }), /completed, cancelled or dead/],
    [() => queue.obliterate({ force: "yes" as unknown as boolean }), /force must be a boolean/],
    [() => listQueues(redis.url, { prefix: "a{b}" }), /Cannot list queues: prefix must be/],
  ];
  for (const [call, message] of cases) {
    await assert.rejects(async () => await call(), message);
  }
  const controller = new AbortController();
  controller.abort(new Error("stop"));
  await assert.rejects(queue.drain({ signal: controller.signal }), /stop/);
});

Deno.test("admin API on Redis Cluster: listing records, listQueues and obliterate reach the queue's node", async () => {
  await using cluster = await startCluster();
  const redis = { cluster: cluster.nodes };
  await using queue = new Queue("cq", { redis });
  await queue.enqueueMany("ok", [1, 2, 3].map((n) => ({ data: n, id: `ok-${n}` })));
  await settle(redis as unknown as string, "cq", 3);
  assert.deepEqual(ids((await all(queue, "completed")).jobs), ["ok-1", "ok-2", "ok-3"]);
  assert.deepEqual((await queue.find("ok-")).length, 3);
  await queue.enqueue("t", 1, { id: "w" });
  assert.deepEqual((await listQueues(redis)).map((q) => [q.name, q.stats.waiting]), [["cq", 1]]);
  assert.deepEqual(await queue.drain(), { waiting: 1, delayed: 0 });
  assert.ok(await queue.obliterate() > 0);
  assert.deepEqual(await listQueues(redis), []);
});

Deno.test("jobDetails() gives data, result or error, and a timeline from the events", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueue("ok", 21, { id: "ok-1" });
  await queue.enqueue("bad", { why: "x" }, { id: "bad-1" });
  await queue.enqueue("later", [1], { id: "d-1", delay: 60_000 });
  assert.equal((await queue.jobDetails("d-1"))?.data, "[1]");
  assert.equal((await queue.jobDetails("ok-1"))?.data, "21");
  await settle(redis.url, "q", 2);
  const ok = await queue.jobDetails("ok-1");
  assert.equal(ok?.status.state, "completed");
  assert.equal(ok?.result, "21");
  assert.deepEqual(ok?.timeline.map((s) => s.type), ["enqueued", "waiting", "active", "completed"]);
  assert.ok(ok!.timeline.every((s, i, a) => i === 0 || s.at >= a[i - 1]!.at));
  const bad = await queue.jobDetails("bad-1");
  assert.equal(bad?.status.state, "dead");
  assert.equal(bad?.data, '{"why":"x"}');
  assert.match(bad?.status.error ?? "", /boom/);
  assert.ok(bad?.deadId);
  assert.deepEqual(bad?.timeline.map((s) => s.type), ["enqueued", "waiting", "active", "dead"]);
  assert.equal(bad?.timeline.at(-1)?.detail, "failed");
  assert.equal(await queue.jobDetails("nope"), undefined);
});

Deno.test("paging is exact: one job a page through records, lines and the delayed zset, even at one due time", async () => {
  await using redis = await startRedis();
  await using raw = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueueMany("ok", Array.from({ length: 30 }, (_, i) => ({ data: i, id: `ok-${i}` })));
  await settle(redis.url, "q", 30);
  const done = await all(queue, "completed", { limit: 1 });
  assert.equal(done.pages, 30, "a page of one each, the last ending the walk");
  assert.equal(new Set(ids(done.jobs)).size, 30, "no job twice");
  // A job listed on one page and gone before the next hides no other.
  assert.equal(await queue.clean("completed", { olderThan: 0 }), 30);
  await queue.enqueueMany("ok", Array.from({ length: 30 }, (_, i) => ({ data: i, id: `re-${i}` })));
  await settle(redis.url, "q", 30);
  let records = await queue.jobs("completed", { limit: 4 });
  const listed = records.jobs.map((j) => j.id);
  await raw.del(queue.keys.job(listed[1]!));
  while (records.cursor) {
    records = await queue.jobs("completed", { limit: 4, cursor: records.cursor });
    listed.push(...records.jobs.map((j) => j.id));
  }
  assert.equal(new Set(listed).size, 30);
  // 20 jobs due at the same ms, and one removed between pages.
  const at = Date.now() + 3_600_000;
  await queue.enqueueMany(
    "d",
    Array.from({ length: 20 }, (_, i) => ({ data: i, id: `d-${i}`, at })),
  );
  const seen: string[] = [];
  let page = await queue.jobs("delayed", { limit: 3 });
  seen.push(...page.jobs.map((j) => j.id));
  await queue.job(page.jobs.at(-1)!.id).cancel();
  while (page.cursor) {
    page = await queue.jobs("delayed", { limit: 3, cursor: page.cursor });
    seen.push(...page.jobs.map((j) => j.id));
  }
  assert.equal(seen.length, 20);
  assert.equal(new Set(seen).size, 20);
  await queue.groups.set("t", { concurrency: 1 });
  await queue.enqueueMany(
    "g",
    Array.from({ length: 12 }, (_, i) => ({ data: i, id: `g-${i}`, group: "t" })),
  );
  const grouped = await all(queue, "waiting", { limit: 1, group: "t" });
  assert.equal(grouped.jobs.length, 12);
  assert.equal(new Set(ids(grouped.jobs)).size, 12);
});

Deno.test("jobDetails() falls back on the record for steps the events stream no longer holds", async () => {
  await using redis = await startRedis();
  await using raw = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueue("ok", 1, { id: "ok-1" });
  await settle(redis.url, "q", 1);
  assert.equal(await raw.del(queue.keys.events), 1, "as if trimmed away");
  const details = await queue.jobDetails("ok-1");
  assert.deepEqual(details?.timeline.map((s) => s.type), ["enqueued", "active", "completed"]);
});

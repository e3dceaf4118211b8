/**
 * Groups in one process: per-group concurrency, fairness between a big group and a small one,
 * pauses and per-group settings, group rate limits and 429 pauses, grouped jobs through
 * retries, delays and cancels with every group's room given back, tenant isolation, signing,
 * Redis Cluster, and every option edge.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { type AnyTask, Queue, task, type TaskContext, ValidationError, Worker } from "../mod.ts";
import { startCluster, startRedis } from "../src/testing.ts";
import { busiest, inspect, runUntil } from "./_helpers.ts";
import { queueKeys } from "../src/keys.ts";
import { delay } from "../src/async.ts";
import { decodeFields, encodeFields } from "../src/codec.ts";
import { canonical } from "../src/sign.ts";

/** Counts running jobs per group and keeps the most seen at once. */
class Running {
  now = new Map<string, number>();
  most = new Map<string, number>();
  enter(group: string) {
    const n = (this.now.get(group) ?? 0) + 1;
    this.now.set(group, n);
    this.most.set(group, Math.max(this.most.get(group) ?? 0, n));
  }
  leave(group: string) {
    this.now.set(group, this.now.get(group)! - 1);
  }
}

/** Asserts that no group has room held, jobs waiting or slots left: all given back. */
async function assertDrained(url: string, name = "q") {
  await using r = inspect(url);
  const keys = queueKeys(name, "sluice");
  assert.deepEqual(await r.hgetall(keys.groupLines), {}, "running counts and lines");
  assert.equal(await r.hlen(keys.groupJobs), 0, "waiting jobs");
  assert.equal(await r.hlen(keys.groupSlots), 0, "slots");
}

Deno.test("groups.concurrency: no group runs more than its limit at once, and every job completes", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const running = new Running();
  const work = task("work", async (_: number, ctx: TaskContext) => {
    running.enter(ctx.job.group!);
    await delay(15);
    running.leave(ctx.job.group!);
  });
  const groups = ["a", "b", "c"];
  for (const group of groups) {
    await queue.enqueueMany(work, Array.from({ length: 20 }, (_, i) => ({ data: i, group })));
  }
  const listed = await queue.groups.list();
  // Nothing limits groups yet: each one's jobs went straight to the stream.
  assert.deepEqual(listed.map((g) => [g.group, g.running, g.waiting]), [
    ["a", 20, 0],
    ["b", 20, 0],
    ["c", 20, 0],
  ]);
  const worker = new Worker("q", [work], {
    redis: redis.url,
    concurrency: 10,
    groups: { concurrency: 2 },
    handleSignals: false,
  });
  // Jobs enqueued before the limit was set are in the stream already: the limit holds for
  // those enqueued after the worker stored it.
  const late = Array.from({ length: 20 }, (_, i) => ({ data: i, group: "d" }));
  let sent: Promise<unknown> | undefined;
  worker.addEventListener("started", () => sent ??= queue.enqueueMany(work, late));
  const done = await runUntil(worker, 80);
  await sent;
  assert.equal(done.length, 80);
  assert.equal(running.most.get("d"), 2, `group d ran ${running.most.get("d")} at once`);
  await assertDrained(redis.url);
  const after = await queue.groups.list();
  assert.deepEqual(after, []);
});

Deno.test("fairness: a small group's jobs start among a big group's backlog, not after it", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const order: string[] = [];
  const work = task("work", async (_: null, ctx: TaskContext) => {
    order.push(ctx.job.group!);
    await delay(1);
  });
  const worker = new Worker("q", [work], {
    redis: redis.url,
    concurrency: 4,
    groups: { concurrency: 2 },
    handleSignals: false,
  });
  const running = worker.run();
  // The worker stores its groups.concurrency before it reads: once a job completed, it holds.
  const warm = Promise.withResolvers<void>();
  worker.addEventListener("completed", () => warm.resolve(), { once: true });
  await queue.enqueue(work, null, { group: "warm-up" });
  await warm.promise;
  order.length = 0;
  await queue.enqueueMany(work, Array.from({ length: 2_000 }, () => ({ data: null, group: "A" })));
  // B arrives once A's backlog is under way.
  while (order.length < 100) await delay(5);
  const mark = order.length;
  await queue.enqueueMany(work, Array.from({ length: 50 }, () => ({ data: null, group: "B" })));
  while (order.filter((g) => g === "B").length < 50) await delay(5);
  const last = order.lastIndexOf("B");
  worker.stop();
  await running;
  // Within about 2 × 50 starts of B's enqueue: B's 50 and as many of A's, plus what was in
  // flight when B came (A's 2 in the stream, and starts during the enqueue call itself).
  const bound = 2 * 50 + 10;
  assert.ok(last - mark <= bound, `B's last job started ${last - mark} starts after its enqueue`);
  const stats = await queue.groups.list();
  assert.ok(stats.find((g) => g.group === "A")!.waiting > 1_000, "A's backlog was still there");
});

Deno.test("queue.groups: set() overrides the default, pause() holds a group's jobs back, resume() lets them go", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const running = new Running();
  const work = task("work", async (_: null, ctx: TaskContext) => {
    running.enter(ctx.job.group!);
    await delay(5);
    running.leave(ctx.job.group!);
  });
  await queue.groups.set("one", { concurrency: 1 });
  await queue.groups.pause("held");
  await queue.enqueueMany(work, Array.from({ length: 10 }, () => ({ data: null, group: "one" })));
  await queue.enqueueMany(work, Array.from({ length: 5 }, () => ({ data: null, group: "held" })));
  let listed = await queue.groups.list();
  assert.deepEqual(
    listed.map((g) => [g.group, g.waiting, g.running, g.concurrency, g.own, g.paused]),
    [["held", 5, 0, undefined, false, true], ["one", 9, 1, 1, true, false]],
  );
  const worker = new Worker("q", [work], {
    redis: redis.url,
    concurrency: 8,
    groups: { concurrency: 3 },
    handleSignals: false,
  });
  let completed = 0;
  worker.addEventListener("completed", () => {
    completed++;
    if (completed === 10) {
      // Group one is done, group held has run nothing: resume it.
      assert.equal(running.most.get("held"), undefined);
      void queue.groups.resume("held");
    }
    if (completed === 15) worker.stop();
  });
  await worker.run();
  assert.equal(completed, 15);
  assert.equal(running.most.get("one"), 1, "its own concurrency won over the default of 3");
  assert.equal(running.most.get("held"), 3, "the default applied to it");
  await assertDrained(redis.url);
  // Dropping the override lets the default apply; the group stays listed while paused only.
  await queue.groups.set("one", { concurrency: null });
  listed = await queue.groups.list();
  assert.deepEqual(listed, []);
});

Deno.test("grouped jobs keep their group's room through retries, delays and cancels, and give it back", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  let failures = 0;
  const flaky = task("flaky", (n: number) => {
    if (n % 2 === 0 && failures++ < 5) throw new Error("again");
    return n;
  }, { retry: { attempts: 3, backoff: { type: "fixed", delay: 20 } } });
  // With room for 1, the first job is in the stream and the rest wait in line.
  await queue.groups.set("g", { concurrency: 1 });
  const handles = await queue.enqueueMany(
    flaky,
    Array.from({ length: 10 }, (_, i) => ({ data: i, group: "g" })),
  );
  assert.ok(handles[0]!.entryId !== undefined && handles[1]!.entryId === undefined);
  const delayed = await queue.enqueue(flaky, 11, { group: "g", delay: 50 });
  // A cancel takes a job out of the line; the line moves on past its place.
  assert.deepEqual(await handles[5]!.cancel(), { cancelled: true, state: "waiting" });
  assert.equal((await handles[5]!.info())?.state, "cancelled");
  // Cancelling the one in the stream gives the room to the next in line.
  assert.deepEqual(await handles[0]!.cancel(), { cancelled: true, state: "waiting" });
  const next = await handles[1]!.info();
  assert.equal(next?.state, "waiting");
  assert.equal(next?.group, "g");
  const worker = new Worker("q", [flaky], {
    redis: redis.url,
    concurrency: 4,
    handleSignals: false,
  });
  const done = await runUntil(worker, 9);
  assert.deepEqual(done.map((d) => d.job.data).sort((a, b) => (a as number) - (b as number)), [
    1,
    2,
    3,
    4,
    6,
    7,
    8,
    9,
    11,
  ]);
  assert.ok(done.some((d) => d.job.attempt > 1), "some jobs were retried");
  assert.equal((await delayed.info())?.state, "completed");
  await assertDrained(redis.url);
});

Deno.test("queue.forGroup: a scoped producer sees and cancels its own group's jobs only", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const acme = queue.forGroup("acme"), globex = queue.forGroup("globex");
  const mine = await acme.enqueue("t", 1, { id: "acme-1" });
  await queue.enqueue("t", 2, { id: "plain-1" });
  assert.equal((await mine.info())?.group, "acme");
  assert.equal((await acme.job("acme-1").info())?.state, "waiting");
  // Another group's job, and a job of no group, are unknown to a scoped producer.
  assert.equal(await globex.job("acme-1").info(), undefined);
  assert.equal(await acme.job("plain-1").info(), undefined);
  assert.deepEqual(await globex.job("acme-1").cancel(), { cancelled: false, state: "unknown" });
  await assert.rejects(
    globex.job("acme-1").result({ signal: AbortSignal.timeout(2_000) }),
    /no such job in group "globex"/,
  );
  assert.equal((await queue.job("acme-1").info())?.state, "waiting", "the job is untouched");
  // Its own: cancelled.
  assert.deepEqual(await acme.job("acme-1").cancel(), { cancelled: true, state: "waiting" });
  // A scoped producer enqueues in its own group only.
  await assert.rejects(
    acme.enqueue("t", 1, { group: "globex" }),
    (err: Error) =>
      err instanceof ValidationError &&
      err.message ===
        'Cannot enqueue in group "acme": group is "globex"; a scoped producer enqueues in its own group only',
  );
  await assert.rejects(
    acme.enqueueMany("t", [{ data: 1 }, { data: 2, group: "x" }]),
    /Cannot enqueue in group "acme": item 1: group is "x"/,
  );
  const many = await acme.enqueueMany("t", [{ data: 1 }, { data: 2, group: "acme" }]);
  for (const h of many) assert.equal((await h.info())?.group, "acme");
  assert.throws(() => queue.forGroup(""), ValidationError);
});

Deno.test("groups.rateLimit: each group has its own limit; ctx.rateLimited pauses the job's group, not its task", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const starts = new Map<string, number[]>();
  let paused = false;
  const call = task("call", (_: null, ctx: TaskContext) => {
    const group = ctx.job.group!;
    if (group === "x" && !paused) {
      paused = true;
      ctx.rateLimited(600);
    }
    starts.set(group, [...starts.get(group) ?? [], Date.now()]);
  });
  for (const group of ["a", "b"]) {
    await queue.enqueueMany(call, Array.from({ length: 8 }, () => ({ data: null, group })));
  }
  const worker = new Worker("q", [call], {
    redis: redis.url,
    concurrency: 8,
    groups: { rateLimit: { limit: 4, interval: 500 } },
    handleSignals: false,
  });
  const began = Date.now();
  await runUntil(worker, 16);
  for (const group of ["a", "b"]) {
    const times = starts.get(group)!;
    assert.equal(times.length, 8);
    assert.ok(busiest(times, 500) <= 4, `group ${group}: ${busiest(times, 500)} in a window`);
  }
  // Each group's 8 starts need 2 windows: a shared limit of 4 would need 4.
  const took = Date.now() - began;
  assert.ok(took >= 500 && took < 1_500, `took ${took} ms`);

  // A 429 in group x's job pauses group x; group y and the task go on.
  starts.clear();
  await queue.enqueueMany(call, Array.from({ length: 3 }, () => ({ data: null, group: "x" })));
  await queue.enqueueMany(call, Array.from({ length: 3 }, () => ({ data: null, group: "y" })));
  const second = new Worker("q", [call], {
    redis: redis.url,
    concurrency: 1,
    handleSignals: false,
  });
  let limitedAt = 0;
  second.addEventListener("rateLimited", () => limitedAt ||= Date.now());
  await runUntil(second, 6);
  assert.ok(limitedAt > 0);
  const ys = starts.get("y")!, xs = starts.get("x")!;
  assert.equal(ys.length, 3);
  assert.equal(xs.length, 3);
  assert.ok(ys.every((t) => t < limitedAt + 500), "group y did not wait for x's pause");
  assert.ok(xs.every((t) => t >= limitedAt + 550), "group x waited its pause out");
});

Deno.test("signed grouped jobs run; field group is signed, so moving a job to another group fails its check", async () => {
  const job = { id: "1", task: "t", data: "{}", attempt: 1, enq: 5 };
  const plain = new TextDecoder().decode(canonical(job));
  const grouped = new TextDecoder().decode(canonical({ ...job, group: "acme" }));
  assert.equal(plain, "1:1,1:1,1:t,2:{},1:5,-,-,-,");
  assert.equal(grouped, plain + "4:acme,");
  // The wire: group travels as a field of its own, and is checked on the way in.
  const fields = encodeFields({ ...job, group: "acme" });
  assert.deepEqual(decodeFields(fields), { ...job, group: "acme" });
  const bad = encodeFields({ ...job, group: "a\nb" });
  assert.deepEqual(decodeFields(bad), {
    reason: "malformed",
    error: 'field group must be 1 to 200 characters, none of them a control character, got "a\\nb"',
  });

  await using redis = await startRedis();
  const signing = { signingKeys: ["a long random secret"] };
  await using queue = new Queue("q", { redis: redis.url, ...signing });
  const echo = task("echo", (n: number) => n);
  await queue.enqueueMany(echo, [1, 2, 3].map((n) => ({ data: n, group: "acme" })));
  // Moved to another group by someone without the key: refused as a bad signature.
  await using r = inspect(redis.url);
  const keys = queueKeys("q", "sluice");
  const entries = await r.xrange(keys.stream, "-", "+", "COUNT", 1);
  const forged = [...entries[0]![1]];
  // Same job, same signature, another group: a tenant's job moved into another's group.
  forged[forged.indexOf("group") + 1] = "globex";
  await r.xadd(keys.stream, "*", ...forged);
  const ran: unknown[] = [], warnings: string[] = [];
  const check = (_pushed: void) => {
    if (ran.length === 3 && warnings.length === 1) worker.stop();
  };
  const worker = new Worker("q", [echo], {
    redis: redis.url,
    handleSignals: false,
    ...signing,
    logger: { info() {}, error() {}, warn: (m: string) => check(void warnings.push(m)) },
  });
  worker.addEventListener("completed", (e) => check(void ran.push(e.detail.job.data)));
  await worker.run();
  assert.deepEqual(ran.sort(), [1, 2, 3]);
  assert.match(warnings[0]!, /\(bad-signature\): field sig does not match/);
  const letters = await queue.dead.list();
  assert.equal(letters.length, 1);
  assert.equal(letters[0]!.reason, "bad-signature");
  // The forged entry held room in no group: nothing is left counted.
  await assertDrained(redis.url);
});

Deno.test("bad group input gets its own error naming the option and the value", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const enqueue = (group: unknown, extra = {}) =>
    assert.rejects(queue.enqueue("t", 1, { group: group as string, ...extra }), ValidationError);
  for (const group of ["", "x".repeat(201), "a\nb", "tab\there", 5, null]) await enqueue(group);
  await assert.rejects(
    queue.enqueue("t", 1, { group: "" }),
    {
      message:
        'Cannot enqueue t: group must be 1 to 200 characters, none of them a control character, got ""',
    },
  );
  await assert.rejects(
    queue.enqueueMany("t", [{ data: 1 }, { data: 1, group: 7 as unknown as string }]),
    /Cannot enqueue t: item 1: group must be 1 to 200 characters/,
  );
  const withPriorities = new Queue("p", { redis: redis.url, priorities: ["high", "low"] });
  await assert.rejects(
    withPriorities.enqueue("t", 1, { group: "g", priority: "high" }),
    {
      message:
        'Cannot enqueue t: a grouped job cannot have a priority (got group "g" and priority "high"): groups take turns at the lowest priority',
    },
  );
  await withPriorities.close();
  // Worker options.
  const worker = (groups: unknown) => () =>
    new Worker("q", [], { redis: redis.url, handleSignals: false, groups: groups as never });
  const cases: [unknown, string][] = [
    [0, "groups must be an object, got 0"],
    [{ concurrency: 0 }, "groups.concurrency must be an integer from 1 to 1000000, got 0"],
    [{ concurrency: -1 }, "groups.concurrency must be an integer from 1 to 1000000, got -1"],
    [{ concurrency: 1.5 }, "groups.concurrency must be an integer from 1 to 1000000, got 1.5"],
    [{ concurrency: 2e6 }, "groups.concurrency must be an integer from 1 to 1000000, got 2000000"],
    [{ concurrency: "2" }, 'groups.concurrency must be an integer from 1 to 1000000, got "2"'],
    [{ limit: 2 }, "groups has unknown option limit (it takes concurrency and rateLimit)"],
    [{ rateLimit: { limit: 0, interval: 1 } }, "groups.rateLimit.limit must be an integer"],
    [{ rateLimit: 5 }, "groups.rateLimit must be an object { limit, interval }, got 5"],
  ];
  for (const [groups, message] of cases) {
    assert.throws(worker(groups), (err: Error) => {
      assert.ok(err instanceof ValidationError, String(err));
      assert.ok(err.message.includes(message), err.message);
      return true;
    });
  }
  // queue.groups.
  await assert.rejects(queue.groups.set("", { concurrency: 1 }), /Cannot set group: group must be/);
  await assert.rejects(
    queue.groups.set("g", { concurrency: 0 }),
    /Cannot set group: concurrency must be an integer from 1 to 1000000, got 0/,
  );
  await assert.rejects(
    queue.groups.set("g", { limit: 1 } as never),
    /Cannot set group: settings has unknown option limit/,
  );
  await assert.rejects(queue.groups.pause("a\u0000"), /Cannot pause group: group must be/);
  await assert.rejects(queue.groups.resume(3 as never), /Cannot resume group: group must be/);
});

Deno.test("groups on Redis Cluster: the gate's keys share the queue's slot", async () => {
  await using cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
  const redis = { cluster: [...cluster.urls] };
  await using queue = new Queue("q", { redis });
  const running = new Running();
  const work = task("work", async (_: null, ctx: TaskContext) => {
    running.enter(ctx.job.group!);
    await delay(5);
    running.leave(ctx.job.group!);
  });
  await queue.groups.set("a", { concurrency: 1 });
  const handles = await queue.enqueueMany(
    work,
    Array.from({ length: 6 }, (_, i) => ({ data: null, group: i % 2 ? "a" : "b" })),
  );
  await handles[5]!.cancel();
  const worker = new Worker("q", [work] as AnyTask[], {
    redis,
    concurrency: 4,
    groups: { concurrency: 2 },
    handleSignals: false,
  });
  await runUntil(worker, 5);
  assert.equal(running.most.get("a"), 1);
  assert.deepEqual(await queue.groups.list(), [
    {
      group: "a",
      waiting: 0,
      running: 0,
      concurrency: 1,
      own: true,
      rateLimit: undefined,
      paused: false,
      rateLimited: false,
    },
  ]);
});

Deno.test("a cancel of a job the gate moved on never takes a later job that reuses its place in the line", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.groups.set("g", { concurrency: 1 });
  const [a1, a2] = await queue.enqueueMany("t", [{ data: 1, group: "g" }, { data: 2, group: "g" }]);
  // a2 waits at place 1; cancelling a1 moves it into the stream and empties the line.
  await a1!.cancel();
  const a3 = await queue.enqueue("t", 3, { group: "g" });
  // a3 now waits at place 1 too: a2's cancel must find a2 in the stream, not a3 in the line.
  assert.deepEqual(await a2!.cancel(), { cancelled: true, state: "waiting" });
  assert.equal((await a3.info())?.state, "waiting");
  const [group] = await queue.groups.list();
  assert.equal(group?.running, 1, "a3 moved into the stream");
  assert.equal(group?.waiting, 0);
  const ids: string[] = [];
  const stop = new AbortController();
  for await (const job of queue.consume({ signal: stop.signal })) {
    ids.push(job.id);
    await job.ack();
    stop.abort();
  }
  assert.deepEqual(ids, [a3.id]);
  await assertDrained(redis.url);
});

Deno.test("a held grouped entry trimmed away gives its room back when the holder renews its lease", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.groups.set("g", { concurrency: 1 });
  await queue.enqueueMany("t", [{ data: 1, group: "g" }, { data: 2, group: "g" }]);
  await using db = inspect(redis.url);
  const stop = new AbortController();
  const seen: unknown[] = [];
  for await (const job of queue.consume({ signal: stop.signal, idleTimeout: 300, prefetch: 1 })) {
    seen.push(job.data);
    if (seen.length === 1) {
      // Someone trims the stream under the held job: the next renewal finds it gone.
      await db.xtrim(queue.keys.stream, "MAXLEN", 0);
      await new Promise((resolve) => job.signal.addEventListener("abort", resolve));
      continue;
    }
    await job.ack();
    stop.abort();
  }
  // The lost job's room went to the next in line, which ran; nothing is left counted.
  assert.deepEqual(seen, [1, 2]);
  await assertDrained(redis.url);
});

Deno.test("a replayed grouped dead letter passes its group's gate again and keeps its group", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const boom = task("boom", () => {
    throw new Error("no");
  }, { retry: { attempts: 1 } });
  const tenant = queue.forGroup("acme");
  const handle = await tenant.enqueue(boom, null);
  const worker = new Worker("q", [boom], { redis: redis.url, handleSignals: false });
  worker.addEventListener("dead", () => worker.stop());
  await worker.run();
  await assertDrained(redis.url);
  // With room for none (paused), the replayed job waits in the line, seen by its tenant.
  await queue.groups.pause("acme");
  assert.equal(await queue.dead.replay({ all: true }), 1);
  const info = await tenant.job(handle.id).info();
  assert.equal(info?.state, "waiting");
  assert.equal(info?.group, "acme");
  const [group] = await queue.groups.list();
  assert.deepEqual([group?.waiting, group?.running], [1, 0]);
  assert.equal(await queue.groups.resume("acme"), 1);
  assert.deepEqual(await tenant.job(handle.id).cancel(), { cancelled: true, state: "waiting" });
  await assertDrained(redis.url);
});

Deno.test("a group whose concurrency was raised behind the gate's back fills all its room on its next settle", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.groups.set("g", { concurrency: 1 });
  await queue.enqueueMany("t", Array.from({ length: 5 }, (_, i) => ({ data: i, group: "g" })));
  // A raise stored without the fill that queue.groups.set does (as when a line grows while a
  // Worker stores its default): 1 in the stream, 4 waiting, room for 3.
  await using db = inspect(redis.url);
  await db.hset(queue.keys.groups, "c:g", "3");
  const stop = new AbortController();
  for await (const job of queue.consume({ signal: stop.signal, prefetch: 1 })) {
    await job.ack();
    stop.abort();
  }
  const [group] = await queue.groups.list();
  assert.deepEqual([group?.running, group?.waiting], [3, 1]);
  // A new job of the group waits behind the line, and the line moves while there is room.
  await db.hset(queue.keys.groups, "c:g", "5");
  await queue.enqueue("t", 5, { group: "g" });
  const [after] = await queue.groups.list();
  assert.deepEqual([after?.running, after?.waiting], [5, 0]);
});

Deno.test("lines written by the previous version (text states, JSON jobs) are read and drained", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.groups.set("old", { concurrency: 1 });
  // What 0.1's gate left behind: one job of group "old" running (its slot held), two waiting
  // in its line as JSON arrays, its state "<r> <h> <t> <n>" as text.
  await using db = inspect(redis.url);
  const enq = String(Date.now());
  const fields = (id: string, data: number) =>
    ["v", "1", "id", id, "task", "t", "data", String(data), "attempt", "1", "enq", enq].concat(
      ["group", "old"],
    );
  const running = await db.xadd(queue.keys.stream, "*", ...fields("j0", 0));
  await db.hset(queue.keys.groupSlots, `e:${running}`, "old\nj0", "j:j0", running!);
  await db.hset(
    queue.keys.groupJobs,
    "1:old",
    JSON.stringify(fields("j1", 1)),
    "2:old",
    JSON.stringify(fields("j2", 2)),
  );
  await db.hset(queue.keys.groupLines, "old", "1 0 2 2");
  const [listed] = await queue.groups.list();
  assert.deepEqual([listed?.group, listed?.running, listed?.waiting], ["old", 1, 2]);
  const seen: number[] = [];
  const t = task("t", (n: number) => void seen.push(n));
  const worker = new Worker("q", [t], { redis: redis.url, handleSignals: false });
  const done = await runUntil(worker, 3);
  assert.equal(done.length, 3);
  // One at a time, in line order: the state and the waiting jobs were read as written.
  assert.deepEqual(seen, [0, 1, 2]);
  await assertDrained(redis.url);
});

Deno.test("a line holds jobs in the short form or the full one, as each fits; both are listed, cancelled and run in order", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.groups.set("mix", { concurrency: 1 });
  await using db = inspect(redis.url);
  const ids: string[] = [];
  ids.push(await queue.enqueue("t", 0, { group: "mix" }).then((j) => j.id)); // runs first
  // Short: just the fields every job has, and its group. Full: with a timeout of its own.
  ids.push(await queue.enqueue("t", 1, { group: "mix" }).then((j) => j.id));
  ids.push(await queue.enqueue("t", 2, { group: "mix", timeout: 5_000 }).then((j) => j.id));
  ids.push(await queue.enqueue("t", 3, { group: "mix" }).then((j) => j.id));
  // What a version before the short form left: every name and value, MessagePack strings.
  const pack = (...texts: string[]) =>
    Buffer.concat(texts.map((t) => {
      const bytes = Buffer.from(t);
      return Buffer.concat([Buffer.from([0xd9, bytes.length]), bytes]);
    }));
  const old = ["v", "1", "id", "old-4", "task", "t", "data", "4", "attempt", "1", "enq"]
    .concat([String(Date.now()), "group", "mix"]);
  const state = await db.hgetBuffer(queue.keys.groupLines, "mix");
  const [r, h, t, n] = [1, 9, 17, 25].map((at) => Number(state!.readBigInt64LE(at)));
  assert.deepEqual([r, h, t, n], [1, 0, 3, 3]);
  await db.hset(queue.keys.groupJobs, "4:mix", pack(...old));
  const next = Buffer.from(state!);
  next.writeBigInt64LE(4n, 17);
  next.writeBigInt64LE(4n, 25);
  await db.hset(queue.keys.groupLines, "mix", next);
  ids.push("old-4");
  const forms = await Promise.all(
    ["1:mix", "2:mix", "3:mix", "4:mix"].map((f) => db.hgetBuffer(queue.keys.groupJobs, f)),
  );
  assert.deepEqual(forms.map((b) => b![0]), [0x01, 0xa1, 0x01, 0xd9]);
  // Listed with their data, whatever the form (the first from the stream, the rest from the line).
  const page = await queue.jobs("waiting", { group: "mix" });
  const byId = (a: string[], b: string[]) => a[0]! < b[0]! ? -1 : 1;
  assert.deepEqual(
    page.jobs.map((j) => [j.id, j.data as string]).sort(byId),
    ids.map((id, i) => [id, String(i)]).sort(byId),
  );
  // A short one and a full one cancelled while they wait: the rest run, in line order.
  assert.deepEqual(await queue.job(ids[1]!).cancel(), { cancelled: true, state: "waiting" });
  assert.deepEqual(await queue.job(ids[2]!).cancel(), { cancelled: true, state: "waiting" });
  const seen: number[] = [];
  const worker = new Worker("q", [task("t", (x: number) => void seen.push(x))], {
    redis: redis.url,
    handleSignals: false,
  });
  await runUntil(worker, 3);
  assert.deepEqual(seen, [0, 3, 4]);
  await assertDrained(redis.url);
});

Deno.test("a grouped entry written straight to the stream holds no room, and its ack gives none back", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.groups.set("g", { concurrency: 1 });
  await queue.enqueue("t", "held", { group: "g" }); // holds the group's one slot
  await queue.enqueue("t", "next", { group: "g" }); // waits in its line
  // Another language's producer, with a plain XADD of wire format 1: the job bypasses the gate.
  await using db = inspect(redis.url);
  const enq = String(Date.now());
  const hand = [
    "v",
    "1",
    "id",
    "by-hand",
    "task",
    "t",
    "data",
    '"hand"',
    "attempt",
    "1",
    "enq",
    enq,
  ];
  await db.xadd(queue.keys.stream, "*", ...hand, "group", "g");
  const release = Promise.withResolvers<void>();
  const afterHand = Promise.withResolvers<[number, number]>();
  const t = task("t", async (what: string) => {
    if (what === "held") await release.promise;
  });
  const worker = new Worker("q", [t], { redis: redis.url, concurrency: 4, handleSignals: false });
  worker.addEventListener("completed", (e) => {
    if (e.detail.job.data !== "hand") return;
    queue.groups.list().then(([g]) => afterHand.resolve([g!.running, g!.waiting]));
  });
  const done = runUntil(worker, 3);
  // The hand-written job ran and was acked while "held" still runs: the line has not moved.
  assert.deepEqual(await afterHand.promise, [1, 1]);
  release.resolve();
  assert.equal((await done).length, 3);
  await assertDrained(redis.url);
});

Deno.test("the lines hash is kept a hash table: a listpack's lookups scan every group", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.groups.set("a", { concurrency: 1 });
  await queue.enqueueMany("t", Array.from({ length: 3 }, (_, i) => ({ data: i, group: "a" })));
  await using db = inspect(redis.url);
  assert.equal(await db.object("ENCODING", queue.keys.groupLines), "hashtable");
  const [group] = await queue.groups.list();
  assert.deepEqual([group?.running, group?.waiting], [1, 2]);
});

/**
 * Rate limits in one process: a task's limit and a queue's, exact on every window; jobs over
 * the limit charged no attempt and taking no room; `ctx.rateLimited(ms)` pausing a task on
 * another worker; unlimited tasks never asking Redis; and every option edge.
 */
import assert from "node:assert/strict";
import {
  type AnyTask,
  Queue,
  RateLimitedError,
  task,
  type TaskContext,
  ValidationError,
  Worker,
} from "../mod.ts";
import { startCluster, startRedis } from "../src/testing.ts";
import { busiest, inspect, runUntil, sharedRedis } from "./_helpers.ts";
import { queueKeys } from "../src/keys.ts";
import { takeArgs } from "../src/scripts/limit.ts";
import { abortable } from "../src/async.ts";

Deno.test("a task's rate limit: no window holds more than the limit, nothing charged an attempt", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const starts: number[] = [];
  const limited = task("limited", () => {
    starts.push(Date.now());
  }, { rateLimit: { limit: 5, interval: 400 } });
  const n = 22;
  await queue.enqueueMany(limited, Array.from({ length: n }, (_, i) => ({ data: i })));
  const worker = new Worker("q", [limited], {
    redis: redis.url,
    concurrency: 8,
    handleSignals: false,
  });
  let deferred = 0;
  worker.addEventListener("rateLimited", (e) => {
    deferred++;
    assert.ok(e.detail.delay > 0 && e.detail.delay <= 2_000, `delay ${e.detail.delay}`);
  });
  const began = Date.now();
  const done = await runUntil(worker, n);
  assert.equal(done.length, n);
  assert.ok(done.every((d) => d.job.attempt === 1), "no attempt was charged");
  assert.ok(busiest(starts, 400) <= 5, `busiest window: ${busiest(starts, 400)} starts`);
  // 22 starts at 5 per 400 ms need 5 windows: the last opens 1.6 s after the first.
  assert.ok(Date.now() - began >= 1_600, `took ${Date.now() - began} ms`);
  assert.ok(deferred >= n - 5, `deferred ${deferred}`);
  const stats = await queue.stats();
  assert.equal(stats.dead, 0);
  assert.equal(stats.delayed, 0);
});

Deno.test("a queue's rate limit counts every task together; a task's own limit applies too", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const all: number[] = [], slow: number[] = [];
  const a = task("a", () => void all.push(Date.now()));
  const b = task("b", () => {
    const now = Date.now();
    all.push(now);
    slow.push(now);
  }, { rateLimit: { limit: 2, interval: 500 } });
  await queue.enqueueMany(a, Array.from({ length: 10 }, () => ({ data: null })));
  await queue.enqueueMany(b, Array.from({ length: 6 }, () => ({ data: null })));
  const worker = new Worker("q", [a, b], {
    redis: redis.url,
    concurrency: 4,
    rateLimit: { limit: 6, interval: 500 },
    handleSignals: false,
  });
  await runUntil(worker, 16);
  assert.ok(busiest(all, 500) <= 6, `queue: ${busiest(all, 500)} starts in one window`);
  assert.ok(busiest(slow, 500) <= 2, `task b: ${busiest(slow, 500)} starts in one window`);
});

Deno.test("jobs of an unlimited task never ask Redis, and never wait behind a limited one", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using admin = inspect(redis.url);
  const free = task("free", () => {});
  const slow = task("slow", () => {}, { rateLimit: { limit: 1, interval: 60_000 } });
  await queue.enqueueMany(slow, [{ data: 1 }, { data: 2 }, { data: 3 }]);
  await queue.enqueueMany(free, Array.from({ length: 200 }, () => ({ data: null })));
  const worker = new Worker("q", [free, slow], {
    redis: redis.url,
    concurrency: 2,
    handleSignals: false,
  });
  let takes = 0;
  worker.addEventListener("rateLimited", () => takes++);
  const done = await runUntil(worker, 201);
  assert.equal(done.filter((d) => d.job.task === "free").length, 200);
  assert.equal(takes, 2, "two slow jobs were put off a minute");
  const stats = await queue.stats();
  assert.equal(stats.delayed, 2);
  // Watched with MONITOR: the unlimited task's jobs on a worker that has no limit send no
  // TAKE (a script call naming the queue's holds key); the limited ones do.
  await using plain = new Queue("plain", { redis: redis.url });
  await plain.enqueueMany(free, Array.from({ length: 50 }, () => ({ data: null })));
  await plain.enqueueMany(slow, [{ data: 1 }]);
  const monitor = await admin.monitor();
  const sent: string[][] = [];
  monitor.on("monitor", (_time: string, args: string[]) => {
    if (/^evalsha$/i.test(args[0] ?? "") && args.includes("sluice:{plain}:holds")) {
      sent.push(args);
    }
  });
  const lone = new Worker("plain", [free, slow], { redis: redis.url, handleSignals: false });
  await runUntil(lone, 51);
  monitor.disconnect();
  assert.equal(sent.length, 1, "one TAKE, for the one limited job");
  assert.ok(sent[0]!.includes("t:slow"));
});

Deno.test("far from its limit, a TAKE grants starts ahead: far fewer calls than jobs, none over the limit", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using admin = inspect(redis.url);
  const starts: number[] = [];
  const roomy = task("roomy", () => void starts.push(Date.now()), {
    rateLimit: { limit: 100_000, interval: 1_000 },
  });
  const n = 2_000;
  await queue.enqueueMany(roomy, Array.from({ length: n }, () => ({ data: null })));
  const monitor = await admin.monitor();
  let takes = 0;
  monitor.on("monitor", (_time: string, args: string[]) => {
    if (/^evalsha$/i.test(args[0] ?? "") && args.includes("sluice:{q}:holds")) takes++;
  });
  const worker = new Worker("q", [roomy], {
    redis: redis.url,
    concurrency: 32,
    handleSignals: false,
  });
  await runUntil(worker, n);
  monitor.disconnect();
  assert.equal(starts.length, n);
  assert.ok(takes > 0 && takes < n / 8, `${takes} TAKE calls for ${n} jobs`);
  // Every start, those granted ahead included, is in the log.
  assert.ok(Number(await admin.get("sluice:{q}:tally:t:roomy")) >= n);
  // A grant ahead takes one member for all its starts ("<count>:<tag>"): some member stands
  // for several, and the window's members are fewer than the starts they count. (How many
  // fewer depends on how many starts reach each TAKE, which load changes.)
  const members = await admin.zrange("sluice:{q}:rate:t:roomy", 0, -1);
  const counts = members.map((m) => Number(m.slice(0, m.indexOf(":"))));
  assert.ok(counts.some((c) => c > 1), "grants ahead take one member");
  assert.ok(members.length < counts.reduce((a, b) => a + b, 0));
});

Deno.test("a task's bookings and another task's starts never share a key", () => {
  const keys = new Queue("q").keys;
  assert.notEqual(keys.booked("t:a"), keys.rate("t:a:booked"));
  assert.notEqual(keys.rate("t:a"), keys.booked("t:a"));
});

Deno.test("ctx.rateLimited(ms) pauses the task on another worker; the job then completes with attempt 1", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const starts: { id: string; at: number; attempt: number }[] = [];
  let said = false;
  const api = task("api", (data: { hold?: number }, ctx) => {
    starts.push({ id: ctx.job.id, at: Date.now(), attempt: ctx.job.attempt });
    if (data.hold && !said) {
      said = true;
      ctx.rateLimited(data.hold);
    }
  });
  const options = { redis: redis.url, concurrency: 1, handleSignals: false };
  const a = new Worker("q", [api], options);
  const b = new Worker("q", [api], options);
  const heldAt = Promise.withResolvers<number>();
  let error: unknown;
  for (const w of [a, b]) {
    w.addEventListener("rateLimited", (e) => {
      error = e.detail.error;
      heldAt.resolve(Date.now());
    });
  }
  const runs = [a.run(), b.run()];
  await queue.enqueue(api, { hold: 700 }, { id: "first" });
  const at = await abortable(heldAt.promise, AbortSignal.timeout(10_000));
  assert.ok(error instanceof RateLimitedError);
  await queue.enqueueMany(api, Array.from({ length: 5 }, (_, i) => ({ data: {}, id: `n${i}` })));
  const result = await queue.job("first").result({ signal: AbortSignal.timeout(10_000) });
  assert.equal(result, undefined);
  await Promise.all(["n0", "n1", "n2", "n3", "n4"].map((id) => queue.job(id).result()));
  await Promise.all([a.stop(), b.stop()]);
  await Promise.all(runs);
  const later = starts.filter((s) => s.id !== "first" || s.at > at);
  // 700 ms from the pause on Redis's clock; a few ms of slack for the news to travel.
  for (const s of later) assert.ok(s.at >= at + 650, `${s.id} started ${s.at - at} ms after`);
  const first = starts.filter((s) => s.id === "first");
  assert.equal(first.length, 2);
  assert.ok(first.every((s) => s.attempt === 1), "no attempt charged");
  assert.equal((await queue.job("first").info())?.attempt ?? 1, 1);
});

Deno.test("rate limit options: every edge gets its own error naming the option", () => {
  const noop = () => {};
  const bad: [unknown, RegExp][] = [
    [{ limit: 0, interval: 1_000 }, /rateLimit\.limit must be an integer from 1 to 1000000, got 0/],
    [{ limit: -1, interval: 1_000 }, /rateLimit\.limit .* got -1/],
    [{ limit: 1.5, interval: 1_000 }, /rateLimit\.limit .* got 1\.5/],
    [{ limit: 1_000_001, interval: 1_000 }, /rateLimit\.limit .* got 1000001/],
    [{ limit: "5", interval: 1_000 }, /rateLimit\.limit .* got "5"/],
    [{ limit: 5, interval: 0 }, /rateLimit\.interval must be an integer from 1 to 86400000, got 0/],
    [{ limit: 5, interval: 86_400_001 }, /rateLimit\.interval .* got 86400001/],
    [{ limit: 5, interval: Infinity }, /rateLimit\.interval .* got Infinity/],
    [{ limit: 5 }, /rateLimit\.interval .* got undefined/],
    [{ limit: 5, interval: 1_000, max: 3 }, /rateLimit has unknown option max/],
    [5, /rateLimit must be an object \{ limit, interval \}, got 5/],
    [null, /rateLimit must be an object .* got null/],
  ];
  for (const [value, message] of bad) {
    assert.throws(
      () => task("t", noop, { rateLimit: value as { limit: number; interval: number } }),
      (err: Error) =>
        err instanceof ValidationError && /^Cannot define task t: /.test(err.message) &&
        message.test(err.message),
      `task ${JSON.stringify(value)}`,
    );
    assert.throws(
      () =>
        new Worker("q", [task("t", noop)], {
          rateLimit: value as { limit: number; interval: number },
        }),
      (err: Error) =>
        err instanceof ValidationError && /^Cannot create worker: /.test(err.message) &&
        message.test(err.message),
      `worker ${JSON.stringify(value)}`,
    );
  }
  // The edges that are allowed.
  assert.deepEqual(task("t", noop, { rateLimit: { limit: 1, interval: 1 } }).rateLimit, {
    limit: 1,
    interval: 1,
  });
  assert.equal(
    task("t", noop, { rateLimit: { limit: 1_000_000, interval: 86_400_000 } }).rateLimit?.limit,
    1_000_000,
  );
});

Deno.test("ctx.rateLimited: a bad ms fails the attempt naming it; fractions, 0 and more than a day are rounded", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const bad = task("bad", (ms: unknown, ctx) => ctx.rateLimited(ms as number), {
    retry: { attempts: 1 },
  });
  for (const ms of [-5, "5", null]) await queue.enqueue(bad, ms);
  const worker = new Worker("q", [bad], { redis: redis.url, handleSignals: false });
  const errors: string[] = [];
  worker.addEventListener("dead", (e) => {
    errors.push(e.detail.error.message);
    if (errors.length === 3) worker.stop();
  });
  await worker.run();
  assert.deepEqual(errors.map((m) => m.replace(/got .*/, "")), [
    "Cannot pause task bad: ctx.rateLimited(ms) takes a finite number of ms, 0 or more, ",
    "Cannot pause task bad: ctx.rateLimited(ms) takes a finite number of ms, 0 or more, ",
    "Cannot pause task bad: ctx.rateLimited(ms) takes a finite number of ms, 0 or more, ",
  ]);
  assert.deepEqual(errors.map((m) => m.replace(/.*got /, "")), ["-5", '"5"', "null"]);
  // NaN and Infinity cannot travel as JSON data: thrown from the handler itself.
  const edges = new Map<string, RateLimitedError | Error>();
  const probe = task("probe", (ms: number, ctx) => {
    try {
      ctx.rateLimited(ms === -1 ? NaN : ms === -2 ? Infinity : ms);
    } catch (err) {
      edges.set(String(ms), err as Error);
    }
  });
  for (const ms of [0, 1.2, 86_400_001, -1, -2]) await queue.enqueue(probe, ms);
  const prober = new Worker("q", [probe], { redis: redis.url, handleSignals: false });
  let done = 0;
  prober.addEventListener("completed", () => ++done === 5 && prober.stop());
  await prober.run();
  assert.equal((edges.get("0") as RateLimitedError).ms, 1);
  assert.equal((edges.get("1.2") as RateLimitedError).ms, 2);
  assert.equal((edges.get("86400001") as RateLimitedError).ms, 86_400_000);
  assert.match(edges.get("-1")!.message, /got NaN$/);
  assert.match(edges.get("-2")!.message, /got Infinity$/);
});

Deno.test("rate limits on Redis Cluster: the start log shares the queue's slot", async () => {
  await using cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
  const redis = { cluster: [...cluster.urls] };
  await using queue = new Queue("q", { redis });
  const starts: number[] = [];
  const limited = task("limited", () => void starts.push(Date.now()), {
    rateLimit: { limit: 3, interval: 300 },
  });
  await queue.enqueueMany(limited, Array.from({ length: 9 }, () => ({ data: null })));
  const worker = new Worker("q", [limited] as AnyTask[], {
    redis,
    concurrency: 4,
    handleSignals: false,
  });
  await runUntil(worker, 9);
  assert.ok(busiest(starts, 300) <= 3, `busiest window: ${busiest(starts, 300)}`);
});

Deno.test("TAKE sent twice (a resend after a reconnect) counts its starts once; a lost counter is mended", async () => {
  await using redis = await startRedis();
  await using shared = sharedRedis(redis.url);
  await using admin = inspect(redis.url);
  const keys = queueKeys("q", "sluice");
  const scope = { name: "t:x", limit: 100, interval: 60_000 };
  const args = takeArgs(keys, [scope], [{ id: "j1", tag: "0-1-0-1", scopes: [0], extra: 9 }]);
  const first = await shared.command.sluiceTake(args);
  assert.equal(first[1], -9, "granted with 9 ahead");
  await shared.command.sluiceTake(args);
  assert.equal(await admin.get(keys.tally("t:x")), "10");
  // The counter lost (evicted) while its starts stay: counted again from the members.
  await admin.del(keys.tally("t:x"));
  const again = takeArgs(keys, [scope], [{ id: "j2", tag: "0-2-0-1", scopes: [0], extra: 0 }]);
  assert.equal((await shared.command.sluiceTake(again))[1], 0);
  assert.equal(await admin.get(keys.tally("t:x")), "11");
  assert.equal(await admin.zcard(keys.rate("t:x")), 2);
});

Deno.test("a RateLimitedError a handler builds itself: a good ms pauses like ctx.rateLimited, a bad one fails the attempt", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  // Two tasks: the pause one asks for must not touch the other's jobs.
  const thrown = new Set<string>();
  const handler = (ms: number | null, ctx: TaskContext) => {
    if (!thrown.has(ctx.job.id)) {
      thrown.add(ctx.job.id);
      throw new RateLimitedError("429", ms === null ? NaN : ms);
    }
  };
  const retry = { attempts: 2, backoff: { type: "fixed", delay: 0 } } as const;
  const good = task("good", handler, { retry });
  const bad = task("bad", handler, { retry });
  await queue.enqueue(good, 0.5, { id: "first-good" });
  await queue.enqueue(bad, null, { id: "first-bad" });
  const worker = new Worker("q", [good, bad], { redis: redis.url, handleSignals: false });
  const seen: string[] = [];
  worker.addEventListener("rateLimited", (e) => seen.push(`limited ${e.detail.job.id}`));
  worker.addEventListener("retrying", (e) => seen.push(`retrying ${e.detail.job.id}`));
  let done = 0;
  worker.addEventListener("completed", () => ++done === 2 && worker.stop());
  await worker.run();
  assert.deepEqual(seen.sort(), ["limited first-good", "retrying first-bad"]);
  assert.equal((await queue.job("first-good").info())?.attempt, 1);
  assert.equal((await queue.job("first-bad").info())?.attempt, 2);
});

/**
 * Priorities: bad lists and names (each its own error), where enqueue writes each priority's
 * jobs, the list recorded in Redis and refused when it differs, strict order with a bounded
 * window, and the job's priority through retries, dead letters, cancels and stats.
 */
import assert from "node:assert/strict";
import {
  type JobHandle,
  NonRetryableError,
  Queue,
  type QueueOptions,
  type QueueStats,
  task,
  ValidationError,
  Worker,
} from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { inspect, waitForRedis } from "./_helpers.ts";

const P3 = ["bulk", "normal", "urgent"] as const;
const quiet = { info() {}, warn() {}, error() {} };
const noop = task("t", () => {});

/** Options of an in-process worker on `url` with the three priorities, and `more`. */
const workerOptions = (url: string, more: Record<string, unknown> = {}) => ({
  redis: url,
  priorities: P3,
  handleSignals: false,
  logger: quiet,
  ...more,
});

/** `promise`, or a rejection after `ms`: a test of missing behaviour fails, never hangs. */
async function deadline<T>(promise: Promise<T>, what: string, ms = 30_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The entries of a stream as [entry id, field map], oldest first. */
async function entries(
  db: ReturnType<typeof inspect>,
  stream: string,
): Promise<[string, Record<string, string>][]> {
  const raw = await db.xrange(stream, "-", "+");
  return raw.map(([id, fields]) => {
    const map: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) map[fields[i]!] = fields[i + 1]!;
    return [id, map];
  });
}

/** Runs `worker` until `done` resolves (or the deadline passes), then stops it. */
async function runUntil(worker: Worker, done: Promise<unknown>, what: string): Promise<void> {
  const run = worker.run();
  try {
    await deadline(Promise.race([done, run.then(() => assert.fail("run() ended early"))]), what);
  } finally {
    await worker.stop();
    await run.catch(() => {});
  }
}

/** Runs `worker` until the job of `handle` has ended with result `expected`. */
function runUntilResult(worker: Worker, handle: JobHandle, expected: unknown, what: string) {
  const result = handle.result({ signal: AbortSignal.timeout(20_000) });
  return runUntil(worker, result.then((got) => assert.equal(got, expected)), what);
}

// Bad input: each case its own error, thrown before anything connects or is written.

function refused(options: QueueOptions, message: RegExp): void {
  const redis = "redis://127.0.0.1:1";
  assert.throws(() => new Queue("q", { redis, ...options }), { name: "ValidationError", message });
  assert.throws(() => new Worker("q", [noop], { redis, handleSignals: false, ...options }), {
    name: "ValidationError",
    message,
  });
}

Deno.test("priorities: an empty list is refused", () => {
  refused(
    { priorities: [] },
    /^Cannot create .*: priorities must be a non-empty list of names, lowest first, got \[\]$/,
  );
});

Deno.test("priorities: a list with a name twice is refused, naming it", () => {
  refused(
    { priorities: ["bulk", "urgent", "bulk"] },
    /: priority "bulk" appears twice in \["bulk","urgent","bulk"\]$/,
  );
});

Deno.test("priorities: a value that is not a list is refused", () => {
  refused(
    { priorities: "urgent" as unknown as string[] },
    /: priorities must be a non-empty list of names, lowest first, got "urgent"$/,
  );
});

Deno.test("priorities: a bad name is refused, naming it", () => {
  refused(
    { priorities: ["bulk", "not urgent"] },
    /: each priority must be 1 to 200 characters of A-Z a-z 0-9 \. _ : -, got "not urgent"$/,
  );
  refused({ priorities: ["bulk", 7 as unknown as string] }, /: each priority must be .*, got 7$/);
  refused({ priorities: ["", "urgent"] }, /: each priority must be .*, got ""$/);
});

Deno.test("priorities: more than 16 names are refused; 16 are fine", () => {
  const names = Array.from({ length: 17 }, (_, i) => `p${i}`);
  refused({ priorities: names }, /: priorities may hold at most 16 names, got 17$/);
  const queue = new Queue("q", { redis: "redis://127.0.0.1:1", priorities: names.slice(0, 16) });
  assert.equal(queue.name, "q");
});

Deno.test("priorities: a defaultPriority not in the list is refused", () => {
  refused(
    { priorities: P3, defaultPriority: "high" },
    /: defaultPriority must be one of \["bulk","normal","urgent"\], got "high"$/,
  );
});

Deno.test("priorities: a defaultPriority without a list is refused", () => {
  refused({ defaultPriority: "urgent" }, /: defaultPriority "urgent" needs a priorities list$/);
});

Deno.test("enqueue with an unknown priority is refused and writes nothing", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url, priorities: P3 });
  await assert.rejects(queue.enqueue(noop, null, { priority: "high" }), {
    name: "ValidationError",
    message:
      /^Cannot enqueue t: priority "high" is unknown: this queue's priorities are \["bulk","normal","urgent"\]$/,
  });
  assert.deepEqual(await db.keys("*"), [], "nothing written, not even the list");
});

Deno.test("enqueueMany with an unknown priority in one item is refused and writes none of them", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url, priorities: P3 });
  const items = [
    { data: 1, priority: "urgent" },
    { data: 2, priority: "Urgent" },
    { data: 3 },
  ];
  await assert.rejects(queue.enqueueMany(noop, items), {
    name: "ValidationError",
    message: /: priority "Urgent" is unknown: this queue's priorities are \["bulk",/,
  });
  assert.deepEqual(await db.keys("*"), []);
});

Deno.test("enqueue with a priority on a queue without priorities is refused", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  await assert.rejects(queue.enqueue(noop, null, { priority: "urgent" }), {
    name: "ValidationError",
    message:
      /^Cannot enqueue t: priority "urgent" is unknown: this queue has no priorities \(give the Queue a priorities list\)$/,
  });
  await assert.rejects(queue.enqueueMany(noop, [{ data: 1, priority: "bulk" }]), {
    name: "ValidationError",
    message: /this queue has no priorities/,
  });
  assert.deepEqual(await db.keys("*"), []);
});

Deno.test("a Queue whose list differs from the recorded one is refused at its first enqueue, and writes nothing", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using first = new Queue("q", { redis: redis.url, priorities: P3 });
  await first.enqueue(noop, null);
  assert.equal(await db.get(first.keys.priorities), '["bulk","normal","urgent"]');
  for (const list of [["low", "high"], ["urgent", "normal", "bulk"], ["bulk", "normal"]]) {
    await using other = new Queue("q", { redis: redis.url, priorities: list });
    await assert.rejects(other.enqueue(noop, null, { priority: list[0]! }), {
      name: "ValidationError",
      message: new RegExp(
        `^Cannot enqueue to q: the priorities given here \\(${
          RegExp.escape(JSON.stringify(list))
        }\\) differ from the ones recorded for this queue in Redis \\(\\["bulk","normal","urgent"\\]\\); .* drain the queue and delete sluice:\\{q\\}:priorities$`,
      ),
    });
  }
  assert.equal(await db.xlen(first.keys.stream), 1, "only the first queue's job");
  assert.deepEqual((await db.keys("*:stream:*")).sort(), [], "no stream of another list");
  // The same list again is fine, and so is a queue with no list (it writes the lowest).
  await using same = new Queue("q", { redis: redis.url, priorities: [...P3] });
  await same.enqueue(noop, null, { priority: "urgent" });
  await using plain = new Queue("q", { redis: redis.url });
  await plain.enqueue(noop, null);
  assert.equal(await db.xlen(first.keys.stream), 2);
  assert.equal(await db.xlen(first.keys.lane("urgent")), 1);
});

Deno.test("a Worker whose list differs from the recorded one: run() rejects", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, priorities: P3 });
  await queue.enqueue(noop, null, { priority: "urgent" });
  const worker = new Worker("q", [noop], workerOptions(redis.url, { priorities: ["low", "high"] }));
  try {
    await assert.rejects(deadline(worker.run(), "run() to reject", 10_000), {
      name: "ValidationError",
      message:
        /the priorities given here \(\["low","high"\]\) differ from the ones recorded for this queue in Redis \(\["bulk","normal","urgent"\]\)/,
    });
  } finally {
    await worker.stop();
  }
  assert.equal((await queue.stats()).waiting, 1, "the job is still there");
});

Deno.test("a Worker with no list on a queue with a recorded list: run() rejects", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, priorities: P3 });
  await queue.enqueue(noop, null);
  const worker = new Worker("q", [noop], { redis: redis.url, handleSignals: false, logger: quiet });
  try {
    await assert.rejects(deadline(worker.run(), "run() to reject", 10_000), {
      name: "ValidationError",
      message: /the priorities given here \(none\) differ from the ones recorded for this queue/,
    });
  } finally {
    await worker.stop();
  }
});

Deno.test("consume() with a list that differs from the recorded one: the stream errors", async () => {
  await using redis = await startRedis();
  await using producer = new Queue("q", { redis: redis.url, priorities: P3 });
  await producer.enqueue(noop, null);
  await using queue = new Queue("q", { redis: redis.url, priorities: ["bulk", "urgent"] });
  const got: string[] = [];
  await assert.rejects(
    (async () => {
      const signal = AbortSignal.timeout(10_000);
      for await (const job of queue.consume({ signal })) {
        got.push(job.id);
        await job.ack();
      }
    })(),
    { name: "ValidationError", message: /differ from the ones recorded for this queue/ },
  );
  assert.deepEqual(got, [], "nothing delivered");
});

// Where jobs go.

Deno.test("enqueue writes each priority's jobs to its own stream: field pri where not the lowest", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url, priorities: P3 });
  await queue.enqueue(noop, "u", { id: "u", priority: "urgent" });
  await queue.enqueue(noop, "b", { id: "b" });
  await queue.enqueue(noop, "n", { id: "n", priority: "normal", timeout: 5_000 });
  await queue.enqueue(noop, "b2", { id: "b2", priority: "bulk" });
  assert.equal(queue.keys.lane("urgent"), "sluice:{q}:stream:urgent");
  assert.equal(await db.get("sluice:{q}:priorities"), '["bulk","normal","urgent"]');
  const urgent = await entries(db, "sluice:{q}:stream:urgent");
  assert.deepEqual(urgent.map(([, f]) => [f.id, f.pri]), [["u", "urgent"]]);
  // pri follows enq, before the other optional fields.
  const [, normal] = (await db.xrange("sluice:{q}:stream:normal", "-", "+"))[0]!;
  assert.deepEqual(normal.filter((_, i) => i % 2 === 0), [
    "v",
    "id",
    "task",
    "data",
    "attempt",
    "enq",
    "pri",
    "timeout",
  ]);
  const plain = await entries(db, "sluice:{q}:stream");
  assert.deepEqual(plain.map(([, f]) => [f.id, f.pri]), [["b", undefined], ["b2", undefined]]);
  assert.equal(await db.exists("sluice:{q}:stream:bulk"), 0, "the lowest keeps the plain stream");
});

Deno.test("enqueueMany of mixed priorities: each job in its priority's stream, in order", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url, priorities: P3 });
  // Runs of one priority, and changes at every job, across script calls of 100.
  const pick = (i: number) => i < 150 ? P3[i % 3]! : P3[Math.floor(i / 40) % 3]!;
  const items = Array.from(
    { length: 450 },
    (_, i) => ({ id: `j${i}`, data: i, priority: pick(i) }),
  );
  await queue.enqueueMany(noop, items);
  const streams = {
    bulk: queue.keys.stream,
    normal: queue.keys.lane("normal"),
    urgent: queue.keys.lane("urgent"),
  };
  for (const name of P3) {
    const got = (await entries(db, streams[name])).map(([, f]) => f.id);
    const want = items.filter((item) => item.priority === name).map((item) => item.id);
    assert.deepEqual(got, want, name);
  }
});

Deno.test("defaultPriority: a job enqueued without a priority goes to that priority's stream", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", {
    redis: redis.url,
    priorities: P3,
    defaultPriority: "normal",
  });
  await queue.enqueue(noop, null, { id: "d" });
  await queue.enqueueMany(noop, [{ id: "m", data: null }, {
    id: "b",
    data: null,
    priority: "bulk",
  }]);
  const normal = await entries(db, queue.keys.lane("normal"));
  assert.deepEqual(normal.map(([, f]) => [f.id, f.pri]), [["d", "normal"], ["m", "normal"]]);
  assert.deepEqual((await entries(db, queue.keys.stream)).map(([, f]) => f.id), ["b"]);
  // Without defaultPriority, the lowest.
  await using lowest = new Queue("q", { redis: redis.url, priorities: P3 });
  await lowest.enqueue(noop, null, { id: "l" });
  assert.deepEqual((await entries(db, queue.keys.stream)).map(([, f]) => f.id), ["b", "l"]);
});

Deno.test("a delayed urgent job keeps its priority in its payload", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url, priorities: P3 });
  await queue.enqueue(noop, null, { id: "later", priority: "urgent", delay: 60_000 });
  const fields = JSON.parse((await db.hget(queue.keys.payloads, "later"))!) as string[];
  assert.equal(fields[fields.indexOf("pri") + 1], "urgent");
  assert.equal(await db.exists(queue.keys.lane("urgent")), 0, "not in a stream yet");
});

// Consuming: these need the consumer side of priorities.

Deno.test("a worker with jobs of every priority waiting starts all urgent, then normal, then bulk; handlers see job.priority", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, priorities: P3 });
  const items = Array.from({ length: 30 }, (_, i) => ({
    id: `${P3[i % 3]}${i}`,
    data: null,
    priority: P3[i % 3]!,
  }));
  await queue.enqueueMany(noop, items);
  const seen: { id: string; priority: string | undefined }[] = [];
  const all = Promise.withResolvers<void>();
  const record = task("t", (_: null, ctx) => {
    seen.push({ id: ctx.job.id, priority: ctx.job.priority });
    if (seen.length === items.length) all.resolve();
  });
  const worker = new Worker("q", [record], workerOptions(redis.url, { prefetch: 0 }));
  await runUntil(worker, all.promise, "30 starts");
  assert.deepEqual(
    seen.map((s) => s.priority),
    [...Array(10).fill("urgent"), ...Array(10).fill("normal"), ...Array(10).fill("bulk")],
  );
  for (const { id, priority } of seen) assert.ok(id.startsWith(priority!), id);
  // Within a priority, first in first out.
  const ids = seen.map((s) => s.id);
  for (const name of P3) {
    const mine = items.filter((item) => item.priority === name).map((item) => item.id);
    assert.deepEqual(ids.filter((id) => id.startsWith(name)), mine);
  }
});

Deno.test("strict order: with 1,000 bulk jobs waiting, each of 10 urgent jobs enqueued mid-run starts within the worker's next 2 starts (concurrency 1, prefetch 1)", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, priorities: P3 });
  await queue.enqueueMany(
    noop,
    Array.from({ length: 1_000 }, (_, i) => ({ id: `b${i}`, data: null })),
  );
  // The running bulk job enqueues an urgent one at these start counts, and returns only once
  // the enqueue resolved: the worker then holds that job and at most one prefetched (its window
  // is concurrency + prefetch = 2), so however slow the machine, the urgent job is one of the
  // next two starts. No clock is involved.
  const at = new Set(Array.from({ length: 10 }, (_, k) => 5 + k * 97));
  const starts: string[] = [];
  const enqueuedAfter = new Map<string, number>();
  const all = Promise.withResolvers<void>();
  const record = task("t", async (_: null, ctx) => {
    starts.push(ctx.job.id);
    const count = starts.length;
    if (ctx.job.priority === "bulk" && at.has(count)) {
      const id = `u${enqueuedAfter.size}`;
      await queue.enqueue("t", null, { id, priority: "urgent" });
      enqueuedAfter.set(id, count);
    }
    if (count === 1_010) all.resolve();
  });
  const worker = new Worker("q", [record], workerOptions(redis.url, { prefetch: 1 }));
  await runUntil(worker, all.promise, "1,010 starts");
  assert.equal(new Set(starts).size, 1_010, "every job started once");
  assert.equal(enqueuedAfter.size, 10);
  for (const [id, after] of enqueuedAfter) {
    const start = starts.indexOf(id) + 1;
    assert.ok(
      start > after && start <= after + 2,
      `${id}, enqueued after start ${after}, was start ${start}`,
    );
  }
});

Deno.test("strict order: a burst of urgent and normal jobs mid-run starts urgent first, behind at most the held job and two reads' probes", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, priorities: P3 });
  await queue.enqueueMany(
    noop,
    Array.from({ length: 100 }, (_, i) => ({ id: `b${i}`, data: null })),
  );
  const starts: string[] = [];
  const all = Promise.withResolvers<void>();
  const record = task("t", async (_: null, ctx) => {
    starts.push(ctx.job.id);
    if (starts.length === 20) {
      await queue.enqueueMany("t", [
        ...Array.from({ length: 5 }, (_, i) => ({ id: `n${i}`, data: null, priority: "normal" })),
        ...Array.from({ length: 5 }, (_, i) => ({ id: `u${i}`, data: null, priority: "urgent" })),
      ]);
    }
    if (starts.length === 110) all.resolve();
  });
  const worker = new Worker("q", [record], workerOptions(redis.url, { prefetch: 1 }));
  await runUntil(worker, all.promise, "110 starts");
  // A read after the burst asks the bulk lane (its floor) for the room, and each lane above it
  // for one entry: u0 and n0 come in it, with one more bulk job. Two settles (each with a read
  // behind it) may be in flight, both sent before the first reply moved the floor up: so ahead
  // of the last urgent job start at most the job held when the burst came, and two reads' bulk
  // and normal jobs. After them, only urgent jobs are read until they run out.
  const burst = starts.slice(20);
  const next = burst.filter((id) => !id.startsWith("b"));
  assert.deepEqual(next.filter((id) => id.startsWith("u")), ["u0", "u1", "u2", "u3", "u4"]);
  assert.deepEqual(next.filter((id) => id.startsWith("n")), ["n0", "n1", "n2", "n3", "n4"]);
  const lastUrgent = burst.indexOf("u4");
  assert.ok(lastUrgent <= 4 + 5, `u4 started within 5 starts of others: ${starts}`);
  assert.ok(
    burst.slice(0, lastUrgent).filter((id) => id.startsWith("n")).length <= 2,
    `at most two probed normal jobs went before an urgent one: ${starts}`,
  );
  assert.equal(next[0], "u0", `${starts}`);
});

Deno.test("defaultPriority: a worker sees the default priority on jobs enqueued without one", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", {
    redis: redis.url,
    priorities: P3,
    defaultPriority: "normal",
  });
  const handle = await queue.enqueue("t", null);
  const seen = task("t", (_: null, ctx) => ctx.job.priority);
  const worker = new Worker("q", [seen], workerOptions(redis.url));
  await runUntilResult(worker, handle, "normal", "the job's result");
});

Deno.test("a queue without priorities: job.priority is undefined", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const handle = await queue.enqueue("t", null);
  const seen = task("t", (_: null, ctx) => ctx.job.priority ?? "none");
  const worker = new Worker("q", [seen], { redis: redis.url, handleSignals: false, logger: quiet });
  await runUntilResult(worker, handle, "none", "the job's result");
});

Deno.test("retries of an urgent job stay urgent: the task's backoff brings it back to the urgent stream", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, priorities: P3 });
  const seen: string[] = [];
  const flaky = task("flaky", (_: null, ctx) => {
    seen.push(`${ctx.job.attempt}:${ctx.job.priority}`);
    if (ctx.job.attempt < 3) throw new Error("not yet");
    return ctx.job.priority;
  }, { retry: { attempts: 3, backoff: { type: "fixed", delay: 50 } } });
  const handle = await queue.enqueue(flaky, null, { priority: "urgent" });
  const worker = new Worker("q", [flaky], workerOptions(redis.url));
  await runUntilResult(worker, handle, "urgent", "the third attempt");
  assert.deepEqual(seen, ["1:urgent", "2:urgent", "3:urgent"]);
});

Deno.test("a retried urgent job is promoted to the urgent stream, and goes before the bulk jobs still waiting", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url, priorities: P3 });
  await queue.enqueue(noop, null, { id: "flaky", priority: "urgent" });
  await queue.enqueueMany(noop, ["b0", "b1", "b2"].map((id) => ({ id, data: null })));
  const order: string[] = [];
  const controller = new AbortController();
  const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(20_000)]);
  for await (const job of queue.consume({ signal, prefetch: 1 })) {
    order.push(`${job.id}:${job.attempt}:${job.priority}`);
    if (job.id === "flaky" && job.attempt === 1) {
      await job.retry(new Error("once"), { delay: 500 });
      const fields = JSON.parse((await db.hget(queue.keys.payloads, "flaky")) ?? "[]") as string[];
      assert.equal(fields[fields.indexOf("pri") + 1], "urgent", "the retry's payload keeps pri");
      continue;
    }
    if (job.id === "b0") {
      // Held: b0 in hand, nothing else (prefetch 1), until the retry is due on Redis's clock:
      // the settle of b0 then reads nothing behind it, the loop promotes the retry into the
      // urgent stream, and the next read finds it there.
      const due = Number(await db.zscore(queue.keys.delayed, "flaky"));
      await waitForRedis(async () => {
        const [s, us] = await db.time();
        return Number(s) * 1_000 + Math.floor(Number(us) / 1_000) >= due;
      }, "the retry due");
    }
    await job.ack();
    if (order.length === 5) controller.abort();
  }
  // The consumer learns the retry's due time from its wake-up message, on its own clock: a
  // settle a few ms before that may still read b1 behind it. Either way the retry, back in the
  // urgent stream, overtakes the bulk jobs still waiting.
  assert.deepEqual(order.slice(0, 2), ["flaky:1:urgent", "b0:1:bulk"]);
  assert.equal(order.at(-1), "b2:1:bulk", `${order}`);
  assert.ok(order.includes("flaky:2:urgent"), `${order}`);
});

Deno.test("a dead letter of an urgent job keeps pri, and a replay sends it back to the urgent stream", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url, priorities: P3 });
  let fail = true;
  const once = task("once", (_: null, ctx) => {
    if (fail) throw new NonRetryableError("not now");
    return ctx.job.priority;
  });
  const handle = await queue.enqueue(once, null, { id: "d", priority: "urgent" });
  const dead = Promise.withResolvers<void>();
  const first = new Worker("q", [once], workerOptions(redis.url));
  first.addEventListener("dead", () => dead.resolve());
  await runUntil(first, dead.promise, "the dead letter");
  const [letter] = await queue.dead.list();
  assert.equal(letter?.id, "d");
  assert.equal(letter?.fields.pri, "urgent");
  fail = false;
  await queue.dead.replay({ all: true });
  const urgent = await entries(db, queue.keys.lane("urgent"));
  assert.deepEqual(urgent.map(([, f]) => [f.id, f.pri, f.attempt]), [["d", "urgent", "1"]]);
  assert.equal(await db.xlen(queue.keys.stream), 0, "not in the lowest stream");
  const second = new Worker("q", [once], workerOptions(redis.url));
  await runUntil(
    second,
    queue.job<string>(handle.id).result({ signal: AbortSignal.timeout(20_000) })
      .then((p) => assert.equal(p, "urgent")),
    "the replayed job's result",
  );
});

Deno.test("cancel() of a waiting urgent job deletes it from the urgent stream; it never runs", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url, priorities: P3 });
  await queue.enqueue(noop, null, { id: "c", priority: "urgent" });
  const last = await queue.enqueue(noop, null, { id: "after", priority: "urgent" });
  assert.deepEqual(await queue.job("c").cancel(), { cancelled: true, state: "waiting" });
  assert.deepEqual((await entries(db, queue.keys.lane("urgent"))).map(([, f]) => f.id), ["after"]);
  const ran: string[] = [];
  const record = task("t", (_: null, ctx) => void ran.push(ctx.job.id));
  const worker = new Worker("q", [record], workerOptions(redis.url));
  await runUntil(worker, last.result({ signal: AbortSignal.timeout(20_000) }), "the next job");
  assert.deepEqual(ran, ["after"]);
  assert.equal((await queue.job("c").info())?.state, "cancelled");
});

Deno.test("stats() breaks waiting down by priority; a queue without priorities has no breakdown", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, priorities: P3 });
  const some = (n: number, priority: string) =>
    Array.from({ length: n }, () => ({ data: null, priority }));
  await queue.enqueueMany(noop, [...some(3, "bulk"), ...some(2, "normal"), ...some(1, "urgent")]);
  await queue.enqueue(noop, null, { priority: "urgent", delay: 60_000 });
  const stats: QueueStats & { waitingByPriority?: Record<string, number> } = await queue.stats();
  assert.equal(stats.waiting, 6);
  assert.equal(stats.delayed, 1);
  assert.deepEqual(stats.waitingByPriority, { bulk: 3, normal: 2, urgent: 1 });
  await using plain = new Queue("p", { redis: redis.url });
  await plain.enqueue(noop, null);
  const flat: QueueStats & { waitingByPriority?: unknown } = await plain.stats();
  assert.equal(flat.waiting, 1);
  assert.equal(flat.waitingByPriority, undefined);
});

Deno.test("a task given schedule options without cron or every is refused, priority among them", () => {
  const noop = () => {};
  assert.throws(
    () => task("t", noop, { priority: "urgent" } as never),
    (err: unknown) =>
      err instanceof ValidationError &&
      err.message ===
        "Cannot define task t: priority is a schedule option: give cron or every too (a job's priority is given at enqueue)",
  );
  assert.throws(
    () => task("t", noop, { tz: "Europe/Oslo", catchUp: "none" } as never),
    /Cannot define task t: tz, catchUp are schedule options: give cron or every too/,
  );
});

Deno.test("signed jobs keep their priority: field pri is outside the signature, and they run", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  const signingKeys = ["a key of the queue's own, long enough to sign with"];
  await using queue = new Queue("q", { redis: redis.url, priorities: P3, signingKeys });
  const seen = task("t", (_: null, ctx) => ctx.job.priority);
  const urgent = await queue.enqueue(seen, null, { priority: "urgent", timeout: 5_000 });
  const bulk = await queue.enqueue(seen, null);
  const entries = await db.xrange(queue.keys.lane("urgent"), "-", "+");
  const fields = entries[0]?.[1] ?? [];
  assert.deepEqual(fields.slice(10, 14), ["enq", fields[11], "pri", "urgent"]);
  assert.ok(fields.includes("sig"));
  const worker = new Worker("q", [seen], workerOptions(redis.url, { signingKeys }));
  const signal = AbortSignal.timeout(20_000);
  await runUntil(
    worker,
    Promise.all([urgent.result({ signal }), bulk.result({ signal })]).then((results) =>
      assert.deepEqual(results, ["urgent", "bulk"])
    ),
    "both results",
  );
});

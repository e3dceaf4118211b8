/**
 * Live events: queue.events() follows what the scripts write, from any process, in order per
 * job; events: false writes none; the stream stays near its cap; bad options are refused.
 */
import assert from "node:assert/strict";
import {
  NonRetryableError,
  Queue,
  type QueueEvent,
  task,
  type TaskContext,
  Worker,
} from "../mod.ts";
import { startCluster, startRedis } from "../src/testing.ts";
import { countEvents, inspect, WorkerProcess } from "./_helpers.ts";

const quiet = { warn() {}, error() {} };

/** Reads events until `enough` says so, then ends the stream. */
async function collect(
  stream: ReadableStream<QueueEvent>,
  stop: AbortController,
  enough: (seen: QueueEvent[]) => boolean,
): Promise<QueueEvent[]> {
  const seen: QueueEvent[] = [];
  for await (const event of stream) {
    seen.push(event);
    if (enough(seen)) stop.abort();
  }
  return seen;
}

/** Each job's event types, in order. */
function byJob(events: QueueEvent[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const e of events) (out[e.jobId] ??= []).push(e.type);
  return out;
}

Deno.test("events(): every job's way from enqueue to its end, in order, with its details", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const stop = new AbortController();
  const stream = queue.events({ signal: stop.signal });
  let failures = 0;
  const tasks = [
    task("ok", async (_: null, ctx: TaskContext) => {
      await ctx.progress({ step: 1 });
      return "fine";
    }),
    task("flaky", () => {
      if (failures++ === 0) throw new Error("once");
      return "second time";
    }, { retry: { attempts: 3, backoff: { type: "fixed", delay: 1 } } }),
    task("broken", () => {
      throw new NonRetryableError("never");
    }),
  ];
  await queue.enqueue("ok", null, { id: "a" });
  await queue.enqueue("flaky", null, { id: "b" });
  await queue.enqueue("broken", null, { id: "c" });
  await queue.enqueue("ok", null, { id: "d", delay: 50 });
  await queue.enqueue("ok", null, { id: "e", delay: 600_000 });
  assert.deepEqual(await queue.job("e").cancel(), { cancelled: true, state: "delayed" });
  const worker = new Worker("q", tasks, { redis: redis.url, handleSignals: false, logger: quiet });
  const run = worker.run();
  const ends = new Set(["completed", "dead", "cancelled"]);
  const seen = await collect(
    stream,
    stop,
    (seen) => seen.filter((e) => ends.has(e.type)).length === 5,
  );
  await worker.stop();
  await run;
  assert.deepEqual(byJob(seen), {
    a: ["waiting", "active", "progress", "completed"],
    b: ["waiting", "active", "retrying", "waiting", "active", "completed"],
    c: ["waiting", "active", "dead"],
    d: ["delayed", "waiting", "active", "progress", "completed"],
    e: ["delayed", "cancelled"],
  });
  const of = (id: string, type: string) => seen.find((e) => e.jobId === id && e.type === type)!;
  assert.equal(of("a", "waiting").task, "ok");
  assert.deepEqual(of("a", "progress").progress, { step: 1 });
  assert.equal(of("a", "active").attempt, 1);
  assert.match(of("a", "active").worker!, /-/);
  assert.equal(of("b", "retrying").attempt, 2);
  assert.ok(of("b", "retrying").due! >= of("b", "retrying").at);
  assert.equal(seen.filter((e) => e.jobId === "b" && e.type === "active")[1]!.attempt, 2);
  assert.equal(of("c", "dead").reason, "non-retryable");
  assert.equal(of("c", "dead").task, "broken");
  assert.ok(of("d", "delayed").due! >= of("d", "delayed").at + 49);
  assert.equal(of("e", "cancelled").task, "ok");
  for (const e of seen) {
    assert.ok(Math.abs(e.at - Date.now()) < 60_000, `at is a time: ${e.at}`);
    assert.match(e.cursor, /^\d+-\d+$/);
  }
});

Deno.test("events(): a second process follows a worker process; since resumes after a cursor", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const stop = new AbortController();
  const stream = queue.events({ signal: stop.signal });
  const items = Array.from({ length: 200 }, (_, i) => ({ id: `j${i}`, data: { ms: 0 } }));
  await queue.enqueueMany("sleep", items);
  await using _worker = new WorkerProcess(redis.url, { concurrency: 8 });
  const seen = await collect(
    stream,
    stop,
    (seen) => seen.filter((e) => e.type === "completed").length === 200,
  );
  const jobs = byJob(seen);
  assert.equal(Object.keys(jobs).length, 200);
  for (const [id, types] of Object.entries(jobs)) {
    assert.deepEqual(types, ["waiting", "active", "completed"], id);
  }
  // A cursor resumes after its entry: nothing before it, everything after it.
  const middle = seen[300]!;
  const rest = new AbortController();
  const after = await collect(
    queue.events({ since: middle.cursor, signal: rest.signal }),
    rest,
    (got) => got.length === seen.filter((e) => e.cursor > middle.cursor).length,
  );
  assert.ok(after.length > 0);
  assert.ok(after.every((e) => e.cursor > middle.cursor));
  // "0" reads everything the stream keeps; a time reads from then on.
  const all = new AbortController();
  const everything = await collect(
    queue.events({ since: "0", signal: all.signal }),
    all,
    (got) => got.length === seen.length,
  );
  assert.deepEqual(everything, seen);
  const fromTime = new AbortController();
  const at = seen[seen.length - 1]!.at;
  const late = await collect(
    queue.events({ since: new Date(at), signal: fromTime.signal }),
    fromTime,
    (got) => got.length === seen.filter((e) => e.at >= at).length,
  );
  assert.ok(late.every((e) => e.at >= at));
  assert.ok(late.length > 0);
});

Deno.test("events(): a follower in its own process sees every job of a worker in another, in order", async () => {
  await using redis = await startRedis();
  const follower = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "tests/fault/_follower.ts", "--redis", redis.url, "--until", "100"],
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1" },
  }).spawn();
  const lines = follower.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(
    new TransformStream<string, string>(
      {
        buffer: "",
        transform(chunk, controller) {
          const parts = (this.buffer + chunk).split("\n");
          this.buffer = parts.pop()!;
          for (const line of parts) controller.enqueue(line);
        },
        flush(controller) {
          if (this.buffer) controller.enqueue(this.buffer);
        },
      } as Transformer<string, string> & { buffer: string },
    ),
  );
  const reader = lines.getReader();
  assert.equal((await reader.read()).value, "ready");
  await using queue = new Queue("q", { redis: redis.url });
  const items = Array.from({ length: 100 }, (_, i) => ({ id: `f${i}`, data: { ms: 0 } }));
  await queue.enqueueMany("sleep", items);
  await using _worker = new WorkerProcess(redis.url, { concurrency: 4 });
  const seen: QueueEvent[] = [];
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    seen.push(JSON.parse(r.value));
  }
  assert.equal((await follower.status).code, 0);
  const jobs = byJob(seen);
  assert.equal(Object.keys(jobs).length, 100);
  for (const id of Object.keys(jobs)) {
    assert.deepEqual(jobs[id], ["waiting", "active", "completed"], id);
  }
});

Deno.test("events: false writes no events stream; a producer with events and a worker without write only the enqueues", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using off = new Queue("q", { redis: redis.url, events: false });
  await off.enqueue("t", 1);
  assert.equal(await db.exists(off.keys.events), 0);
  await using on = new Queue("q", { redis: redis.url });
  await on.enqueue("t", 2, { id: "x" });
  const worker = new Worker("q", [task("t", () => {})], {
    redis: redis.url,
    handleSignals: false,
    events: false,
  });
  const run = worker.run();
  await on.job("x").result();
  await worker.stop();
  await run;
  const entries = await db.xrange(on.keys.events, "-", "+");
  assert.deepEqual(entries.map(([, fields]) => fields), [["waiting t", '["x"]']]);
});

Deno.test("events: the stream stays near its cap, counting events, not entries", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url, events: { maxlen: 500 } });
  for (let i = 0; i < 20; i++) {
    await queue.enqueueMany("t", Array.from({ length: 100 }, () => ({ data: i })));
  }
  let events = 0;
  for (const [, fields] of await db.xrange(queue.keys.events, "-", "+")) {
    events += countEvents(fields);
  }
  // 2,000 written; approximate trimming keeps at least the cap, and less than a node more.
  assert.ok(events >= 500 && events <= 1_100, `kept ${events}`);
});

Deno.test("events and the event stream's options: every edge refused with its name and value", () => {
  const bad: [unknown, RegExp][] = [
    [0, /events must be true, false or \{ maxlen \}, got 0/],
    ["yes", /events must be true, false or \{ maxlen \}, got "yes"/],
    [{ max: 1 }, /events has no option "max"/],
    [{ maxlen: 0 }, /events.maxlen must be an integer from 1 to 10000000, got 0/],
    [{ maxlen: -1 }, /got -1/],
    [{ maxlen: 1.5 }, /got 1.5/],
    [{ maxlen: 10_000_001 }, /got 10000001/],
  ];
  for (const [events, message] of bad) {
    assert.throws(
      () => new Queue("q", { events: events as boolean }),
      (err: Error) => message.test(err.message) && /Cannot create queue/.test(err.message),
    );
  }
  const queue = new Queue("q", { redis: "redis://127.0.0.1:1" });
  assert.throws(() => queue.events({ since: "yesterday" }), /since must be .* got "yesterday"/);
  assert.throws(() => queue.events({ since: -5 }), /since must be a time from 0 on, got -5/);
  assert.throws(() => queue.events({ count: 0 }), /count must be an integer from 1 to 100000/);
  assert.throws(() => queue.events({ count: 1e6 }), /got 1000000/);
});

Deno.test("events(): ends when its queue closes, and waits out a Redis restart", async () => {
  await using redis = await startRedis();
  const queue = new Queue("q", { redis: redis.url });
  const stream = queue.events();
  await queue.enqueue("t", 1, { id: "before" });
  const reader = stream.getReader();
  assert.equal((await reader.read()).value?.jobId, "before");
  await redis.restart();
  await queue.enqueue("t", 2, { id: "after" });
  assert.equal((await reader.read()).value?.jobId, "after");
  const next = reader.read();
  await queue.close();
  assert.equal((await next).done, true);
});

Deno.test("events(): on Redis Cluster", async () => {
  await using cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
  const redis = { cluster: [...cluster.urls] };
  await using queue = new Queue("q", { redis });
  const stop = new AbortController();
  const stream = queue.events({ signal: stop.signal });
  await queue.enqueue("t", 1, { id: "a" });
  const worker = new Worker("q", [task("t", () => "ok")], { redis, handleSignals: false });
  const run = worker.run();
  const seen = await collect(stream, stop, (s) => s.some((e) => e.type === "completed"));
  await worker.stop();
  await run;
  assert.deepEqual(byJob(seen), { a: ["waiting", "active", "completed"] });
});

Deno.test("events(): a job whose worker was killed with kill -9 is stalled, then active again on a peer", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const stop = new AbortController();
  const stream = queue.events({ signal: stop.signal });
  await using a = new WorkerProcess(redis.url, { idle: 500 });
  await queue.enqueue("sleep", { ms: 60_000 }, { id: "s" });
  // Killed once its start is written (starts are written within 20 ms, or with a settle).
  const reader = stream.getReader();
  const seen: QueueEvent[] = [];
  while (!seen.some((e) => e.type === "active")) seen.push((await reader.read()).value!);
  a.signal("SIGKILL");
  await a.status;
  await using _b = new WorkerProcess(redis.url, { idle: 500, "max-sleep": 10 });
  while (!seen.some((e) => e.type === "completed")) seen.push((await reader.read()).value!);
  stop.abort();
  reader.releaseLock();
  assert.deepEqual(byJob(seen).s, ["waiting", "active", "stalled", "active", "completed"]);
  const actives = seen.filter((e) => e.type === "active");
  assert.notEqual(actives[0]!.worker, actives[1]!.worker);
  assert.equal(actives[1]!.attempt, 1, "a reclaim charges no attempt");
});

Deno.test("events: an enqueue writes one waiting event per job it wrote, none for an id it knew", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueue("t", 0, { id: "old" });
  await queue.enqueueMany("t", [
    { data: 1, id: "old" }, // known before the call
    { data: 2, id: "new" },
    { data: 3, id: "new" }, // known earlier in the call
    { data: 4, id: "later", delay: 60_000 },
  ]);
  const entries = await db.xrange(queue.keys.events, "-", "+");
  // One entry per call; the second call's delayed job has a field of its own (its due time).
  assert.equal(entries.length, 2);
  assert.match(entries[1]![1][0]!, /^delayed t \d+$/);
  const ids = entries.flatMap(([, fields]) => {
    const out: string[] = [];
    for (let i = 0; i < fields.length; i += 2) {
      for (const id of JSON.parse(fields[i + 1]!)) out.push(`${fields[i]!.split(" ")[0]} ${id}`);
    }
    return out;
  });
  assert.deepEqual(ids, ["waiting old", "delayed later", "waiting new"]);
});

Deno.test("events(): aborted right after a read, with events of the same entry still queued, it closes its connection", async () => {
  await using redis = await startRedis();
  const queue = new Queue("q", { redis: redis.url });
  const stop = new AbortController();
  const reader = queue.events({ signal: stop.signal }).getReader();
  await queue.enqueueMany("t", [{ data: 1 }, { data: 2 }, { data: 3 }]); // one entry, 3 events
  assert.equal((await reader.read()).value?.type, "waiting");
  stop.abort();
  // The stream ends after what it had queued, and close() does not wait on it forever.
  let n = 0;
  while (!(await reader.read()).done) n++;
  assert.ok(n <= 2);
  await queue.close();
});

Deno.test("events: jobs a consume() stream held and never handed out are waiting again when it ends", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const stop = new AbortController();
  const stream = queue.events({ signal: stop.signal });
  await queue.enqueueMany("t", [{ data: 1, id: "a" }, { data: 2, id: "b" }, { data: 3, id: "c" }]);
  const reading = new AbortController();
  for await (const job of queue.consume({ signal: reading.signal, prefetch: 3 })) {
    await job.ack();
    reading.abort();
  }
  const seen = await collect(stream, stop, (s) => s.length === 6);
  const jobs = byJob(seen);
  const acked = Object.keys(jobs).find((id) => jobs[id]!.includes("completed"))!;
  assert.deepEqual(jobs[acked], ["waiting", "completed"], "consume() writes no active event");
  for (const id of ["a", "b", "c"].filter((id) => id !== acked)) {
    assert.deepEqual(jobs[id], ["waiting", "waiting"], `${id}: handed back unstarted`);
  }
});

Deno.test("events: a replayed dead letter and a schedule's tick are waiting jobs too", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const stop = new AbortController();
  const stream = queue.events({ signal: stop.signal });
  await queue.enqueue("t", 1, { id: "d" });
  const reading = new AbortController();
  for await (const job of queue.consume({ signal: reading.signal })) {
    await job.fail(new Error("no"));
    reading.abort();
  }
  assert.equal(await queue.dead.replay({ all: true }), 1);
  await queue.schedules.upsert("tick", { every: 50, task: "t" });
  const worker = new Worker("q", [task("t", () => {})], {
    redis: redis.url,
    handleSignals: false,
    logger: quiet,
  });
  const run = worker.run();
  const seen = await collect(stream, stop, (s) => {
    const ticks = s.filter((e) => e.jobId.startsWith("tick@") && e.type === "completed");
    return ticks.length > 0 && s.some((e) => e.jobId === "d" && e.type === "completed");
  });
  await worker.stop();
  await run;
  assert.deepEqual(byJob(seen).d, ["waiting", "dead", "waiting", "active", "completed"]);
  const tick = seen.find((e) => e.jobId.startsWith("tick@") && e.type === "completed")!;
  assert.deepEqual(byJob(seen)[tick.jobId], ["waiting", "active", "completed"]);
});

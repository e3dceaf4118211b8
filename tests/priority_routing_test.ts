/**
 * Priorities outside the consumer: jobs that come back to a stream (promoted delayed jobs,
 * replayed dead letters, schedule ticks) go to their priority's stream; cancel and info find a
 * job in its own stream even where entry ids of two streams are equal; stats count every
 * stream.
 */
import assert from "node:assert/strict";
import type { Redis } from "ioredis";
import { Queue, ValidationError } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { lanesOf } from "../src/priority.ts";
import { queueKeys } from "../src/keys.ts";
import { promote, promoteArgs } from "../src/scripts/promote.ts";
import { cancelArgs } from "../src/scripts/cancel.ts";
import { replayArgs } from "../src/scripts/replay.ts";
import type { ScriptClient } from "../src/scripts/mod.ts";
import { checkSchedule, fireSchedules, storeSchedule } from "../src/schedule.ts";
import { inspect, sharedRedis } from "./_helpers.ts";

const quiet = { info() {}, warn() {}, error() {} };
const PRIORITIES = ["bulk", "normal", "urgent"];
const settings = (url: string) => ({ redis: url, priorities: PRIORITIES, logger: quiet });

/** The job ids in a stream, in order. */
async function idsIn(db: Redis, stream: string): Promise<string[]> {
  const entries = await db.xrange(stream, "-", "+");
  return entries.map(([, f]) => f[f.indexOf("id") + 1]!);
}

/** Field `name` of the entry of job `id` in `stream`, or undefined. */
/**
 * Job "decoy" in the lowest stream and job "target" in the urgent one, both at entry id
 * `entry`, each with a waiting record; consumer w1 of the group reads the one in `delivered`.
 */
async function sameEntryId(db: Redis, queue: Queue, entry: string, delivered: string) {
  const { keys, group } = queue;
  const job = (id: string) => ["v", "1", "id", id, "task", "t", "data", "1", "attempt", "1"];
  await db.xadd(keys.stream, entry, ...job("decoy"), "enq", "1");
  await db.xadd(keys.lane("urgent"), entry, ...job("target"), "enq", "1", "pri", "urgent");
  for (const id of ["decoy", "target"]) {
    await db.hset(keys.job(id), "state", "waiting", "entry", entry, "task", "t", "attempt", "1");
  }
  for (const stream of [keys.stream, keys.lane("urgent")]) {
    await db.xgroup("CREATE", stream, group, stream === delivered ? "0" : "$");
  }
  await db.xreadgroup("GROUP", group, "w1", "COUNT", 1, "STREAMS", delivered, ">");
}

async function fieldOf(db: Redis, stream: string, id: string, name: string) {
  const entries = await db.xrange(stream, "-", "+");
  const fields = entries.find(([, f]) => f[f.indexOf("id") + 1] === id)?.[1];
  const at = fields?.indexOf(name) ?? -1;
  return at < 0 ? undefined : fields![at + 1];
}

Deno.test("a queue without priorities sends PROMOTE, REPLAY and CANCEL the keys and arguments of one stream", () => {
  const keys = queueKeys("q", "sluice");
  const lanes = lanesOf("test", keys);
  // The group keys come with every PROMOTE and CANCEL: a grouped job passes its gate.
  const group = [keys.groups, keys.groupJobs, keys.groupLines, keys.groupSlots];
  assert.deepEqual(promoteArgs({ keys, lanes }, ["a"]), [
    "10",
    keys.stream,
    keys.delayed,
    keys.payloads,
    keys.ticks,
    keys.events,
    ...group,
    keys.job("a"),
    "0",
    "", // no events
    "a",
  ]);
  const replay = replayArgs({ keys, lanes }, [{ deadId: "1-1", id: "a" }]);
  assert.deepEqual(replay.slice(0, 9), [
    "8",
    keys.dead,
    keys.stream,
    ...group,
    keys.events,
    keys.job("a"),
  ]);
  const cancel = cancelArgs({ keys, lanes, group: "g", keepResult: 1 }, "a");
  assert.deepEqual(cancel.slice(0, 11), [
    "9",
    keys.stream,
    keys.delayed,
    keys.payloads,
    keys.job("a"),
    keys.events,
    ...group,
    "g",
  ]);
});

Deno.test("PROMOTE moves a due job to its pri's stream, and one with no or an unknown pri to the lowest", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", settings(redis.url));
  await using db = inspect(redis.url);
  await using shared = sharedRedis(redis.url);
  const { keys } = queue;
  const past = Date.now() - 1_000;
  await queue.enqueue("t", 1, { id: "u", priority: "urgent", at: past });
  await queue.enqueue("t", 2, { id: "n", priority: "normal", at: past });
  await queue.enqueue("t", 3, { id: "b", at: past });
  // A job written by hand, naming a priority this queue does not have.
  const fields = ["v", "1", "id", "x", "task", "t", "data", "4", "attempt", "1", "enq", "1"];
  await db.zadd(keys.delayed, past, "x");
  await db.hset(keys.payloads, "x", JSON.stringify([...fields, "pri", "nope"]));
  assert.equal(await db.xlen(keys.lane("urgent")), 0, "delayed, not in a stream yet");

  const lanes = lanesOf("test", keys, PRIORITIES);
  const [moved] = await promote(shared.command, { keys, lanes }, 100);
  assert.equal(moved, 4);
  assert.deepEqual(await idsIn(db, keys.lane("urgent")), ["u"]);
  assert.deepEqual(await idsIn(db, keys.lane("normal")), ["n"]);
  assert.deepEqual((await idsIn(db, keys.stream)).sort(), ["b", "x"]);
  assert.equal(await fieldOf(db, keys.lane("urgent"), "u", "pri"), "urgent", "pri kept");
  assert.equal(await fieldOf(db, keys.stream, "b", "pri"), undefined);
  const [[entry]] = (await db.xrange(keys.lane("urgent"), "-", "+")) as [[string, string[]]];
  assert.deepEqual(await db.hmget(keys.job("u"), "state", "entry"), ["waiting", entry]);
  assert.equal(await db.zcard(keys.delayed), 0);
  assert.equal(await db.hlen(keys.payloads), 0);
  assert.equal((await queue.job("u").info())?.state, "waiting");
});

Deno.test("dead.replay() puts each letter back in the stream of its pri, with attempt 1", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", settings(redis.url));
  await using db = inspect(redis.url);
  const { keys } = queue;
  const letter = (id: string, extra: string[]) =>
    db.xadd(
      keys.dead,
      "*",
      "v",
      "1",
      "id",
      id,
      "task",
      "t",
      "data",
      "1",
      "attempt",
      "3",
      "enq",
      "1",
      ...extra,
      "error",
      "boom",
      "reason",
      "failed",
      "failed_at",
      "2",
    );
  await letter("hot", ["pri", "urgent"]);
  await letter("cold", []);
  await letter("odd", ["pri", "nope"]);

  assert.equal(await queue.dead.replay({ all: true }), 3);
  assert.equal(await db.xlen(keys.dead), 0);
  assert.deepEqual(await idsIn(db, keys.lane("urgent")), ["hot"]);
  assert.deepEqual(await idsIn(db, keys.stream), ["cold", "odd"]);
  assert.equal(await db.xlen(keys.lane("normal")), 0);
  assert.equal(await fieldOf(db, keys.lane("urgent"), "hot", "attempt"), "1");
  assert.equal(await fieldOf(db, keys.lane("urgent"), "hot", "pri"), "urgent");
  const [[entry]] = (await db.xrange(keys.lane("urgent"), "-", "+")) as [[string, string[]]];
  assert.deepEqual(await db.hmget(keys.job("hot"), "state", "entry"), ["waiting", entry]);
  assert.equal((await queue.job("hot").info())?.state, "waiting");
});

/** Fires schedule `id`'s due tick now, as a worker's promoter would once it is due. */
async function fireNow(queue: Queue, client: ScriptClient, id: string) {
  const { keys } = queue;
  const tick = Number(await client.zscore(keys.ticks, id));
  const spec = (await client.hget(keys.schedules, id))!;
  const ctx = {
    keys,
    lanes: lanesOf("test", keys, PRIORITIES),
    name: queue.name,
    client,
    signer: undefined,
    logger: quiet,
  };
  return await fireSchedules(ctx, tick, [id, String(tick), spec, ""]);
}

Deno.test("a schedule's ticks go to its priority's stream with field pri; list() and trigger() know it", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", settings(redis.url));
  await using db = inspect(redis.url);
  await using shared = sharedRedis(redis.url);
  const { keys } = queue;
  await queue.schedules.upsert("hot", { every: 60_000, task: "t", priority: "urgent" });
  await queue.schedules.upsert("low", { every: 60_000, task: "t", priority: "bulk" });
  await queue.schedules.upsert("plain", { every: 60_000, task: "t" });
  const listed = await queue.schedules.list();
  assert.deepEqual(listed.map((s) => [s.id, s.priority]), [
    ["hot", "urgent"],
    ["low", "bulk"],
    ["plain", undefined],
  ]);
  assert.ok(!("priority" in listed[2]!), "no priority key when none was given");

  assert.equal(await fireNow(queue, shared.command, "hot"), 1);
  assert.equal(await fireNow(queue, shared.command, "low"), 1);
  assert.equal(await fireNow(queue, shared.command, "plain"), 1);
  const [hot] = await idsIn(db, keys.lane("urgent"));
  assert.match(hot!, /^hot@\d+$/);
  const fields = (await db.xrange(keys.lane("urgent"), "-", "+"))[0]![1];
  assert.deepEqual(fields.slice(12, 14), ["pri", "urgent"], "pri right after enq");
  const plain = (await idsIn(db, keys.stream)).sort();
  assert.equal(plain.length, 2);
  assert.match(plain[0]!, /^low@/);
  assert.match(plain[1]!, /^plain@/);
  for (const id of plain) assert.equal(await fieldOf(db, keys.stream, id, "pri"), undefined);
  assert.equal((await queue.job(hot!).info())?.state, "waiting");

  const triggered = await queue.schedules.trigger("hot");
  assert.match(triggered!, /^hot@trigger:/);
  assert.deepEqual(await idsIn(db, keys.lane("urgent")), [hot, triggered]);
  assert.equal(await fieldOf(db, keys.lane("urgent"), triggered!, "pri"), "urgent");
});

Deno.test("a schedule's priority is checked against the queue's, naming the schedule, before anything is stored", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", settings(redis.url));
  await using plain = new Queue("p", { redis: redis.url, logger: quiet });
  await using shared = sharedRedis(redis.url);
  const refused = (message: RegExp) => (err: Error) => {
    assert.ok(err instanceof ValidationError, String(err));
    assert.match(err.message, message);
    return true;
  };
  await assert.rejects(
    queue.schedules.upsert("nightly", { cron: "0 3 * * *", task: "t", priority: "asap" }),
    refused(
      /^Cannot upsert schedule nightly: priority "asap" is unknown: this queue's priorities are \["bulk","normal","urgent"\]/,
    ),
  );
  await assert.rejects(
    plain.schedules.upsert("nightly", { every: 1_000, task: "t", priority: "urgent" }),
    refused(
      /^Cannot upsert schedule nightly: priority "urgent" is unknown: this queue has no priorities/,
    ),
  );
  await assert.rejects(
    queue.schedules.upsert("nightly", {
      every: 1_000,
      task: "t",
      priority: 3 as unknown as string,
    }),
    refused(/^Cannot upsert schedule nightly: priority must be a priority name .*, got 3/),
  );
  // A static schedule (a task's): checked where a worker stores it, given the queue's lanes.
  const spec = checkSchedule("Cannot define task t", "t", { every: 1_000, priority: "asap" });
  const lanes = lanesOf("test", queue.keys, PRIORITIES);
  await assert.rejects(
    storeSchedule(shared.command, queue.keys, "t", spec, lanes),
    refused(/^Cannot store schedule t: priority "asap" is unknown/),
  );
  assert.deepEqual(await queue.schedules.list(), []);
  assert.deepEqual(await plain.schedules.list(), []);
});

Deno.test("cancel() of a waiting urgent job deletes its entry, not an entry of the same id in another stream", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", settings(redis.url));
  await using db = inspect(redis.url);
  const { keys } = queue;
  // The same entry id in two streams: the decoy in the lowest (looked at first), delivered.
  await sameEntryId(db, queue, "5-1", keys.stream);

  assert.equal((await queue.job("target").info())?.state, "waiting");
  const decoy = await queue.job("decoy").info();
  assert.deepEqual([decoy?.state, decoy?.worker], ["active", "w1"]);

  assert.deepEqual(await queue.job("target").cancel(), { cancelled: true, state: "waiting" });
  assert.equal(await db.xlen(keys.lane("urgent")), 0);
  assert.deepEqual(await idsIn(db, keys.stream), ["decoy"], "the decoy is untouched");
  assert.equal(await db.hget(keys.job("target"), "state"), "cancelled");
  assert.equal(await db.hget(keys.job("decoy"), "state"), "waiting");
});

Deno.test("cancel() of a delivered urgent job asks its worker, and info() finds it in its stream", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", settings(redis.url));
  await using db = inspect(redis.url);
  const { keys } = queue;
  // The decoy waits in the lowest stream; the target, same entry id, is delivered.
  await sameEntryId(db, queue, "7-1", keys.lane("urgent"));

  const target = await queue.job("target").info();
  assert.deepEqual([target?.state, target?.worker, target?.deliveries], ["active", "w1", 1]);
  assert.equal((await queue.job("decoy").info())?.state, "waiting");
  assert.deepEqual(await queue.job("target").cancel(), { cancelled: true, state: "active" });
  assert.equal(await db.hget(keys.job("target"), "state"), "cancelling");
  assert.equal(await db.xlen(keys.lane("urgent")), 1, "its worker settles it");
  assert.deepEqual(await idsIn(db, keys.stream), ["decoy"]);
});

Deno.test("stats() counts every priority's stream and reports waitingByPriority", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", settings(redis.url));
  await using db = inspect(redis.url);
  const { keys, group } = queue;
  const empty = await queue.stats();
  assert.deepEqual(
    [empty.waiting, empty.active, empty.lag, empty.oldestWaitingMs, empty.waitingByPriority],
    [0, 0, null, null, { bulk: 0, normal: 0, urgent: 0 }],
  );
  await queue.enqueueMany("t", [
    { data: 1, priority: "urgent" },
    { data: 2, priority: "urgent" },
    { data: 3, priority: "normal" },
    { data: 4 },
    { data: 5 },
    { data: 6 },
  ]);
  for (const stream of [keys.stream, keys.lane("normal"), keys.lane("urgent")]) {
    await db.xgroup("CREATE", stream, group, "0");
  }
  await db.xreadgroup("GROUP", group, "w1", "COUNT", 1, "STREAMS", keys.lane("urgent"), ">");
  const stats = await queue.stats();
  assert.equal(stats.waiting, 5);
  assert.deepEqual(stats.waitingByPriority, { bulk: 3, normal: 1, urgent: 1 });
  assert.equal(stats.active, 1);
  assert.equal(stats.lag, 5);
  assert.equal(stats.consumers, 1);
  assert.ok(stats.oldestWaitingMs !== null && stats.oldestWaitingMs >= 0);

  await using plain = new Queue("p", { redis: redis.url, logger: quiet });
  await plain.enqueue("t", 1);
  const one = await plain.stats();
  assert.equal(one.waiting, 1);
  assert.ok(!("waitingByPriority" in one), "only on a queue with priorities");
});

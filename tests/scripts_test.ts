/**
 * Tests for the Lua scripts and their argument builders: every key in KEYS (records named by
 * the caller, in steps where the ids are only known in Redis), and no record key that can
 * collide with a job's.
 */
import assert from "node:assert/strict";
import { Queue } from "../mod.ts";
import { queueKeys } from "../src/keys.ts";
import { lanesOf } from "../src/priority.ts";
import { dueArgs, promoteArgs } from "../src/scripts/promote.ts";
import { heldArgs, retire, retireArgs } from "../src/scripts/retire.ts";
import { settleArgs } from "../src/scripts/settle.ts";
import { startRedis } from "../src/testing.ts";
import { inspect, pendingCount, sharedRedis, waitForRedis } from "./_helpers.ts";

const quiet = { info() {}, warn() {}, error() {} };

Deno.test("settleArgs() names a record per operation but for an entry with no job id, and the batch's entry id range", () => {
  const keys = queueKeys("q", "sluice");
  const q = { keys, group: "g", keepResult: 5, maxDead: 7 };
  const job = (entryId: string, id: string) => ({ entryId, deliveries: 2, id, attempt: 1 });
  const args = settleArgs(q, "c", [
    { op: "ack", job: { ...job("10-5", "a"), group: "acme" }, result: '"r"', startedAt: "9" },
    { op: "dead", job: { entryId: "9-0", deliveries: 1, id: undefined }, error: "e", reason: "x" },
    { op: "retry", job: job("100-0", "b"), delay: 30, error: "boom" },
    { op: "release", job: job("10-10", "c") },
    { op: "cancel", job: job("11-0", "d"), startedAt: "" },
    { op: "dead", job: job("12-0", "e"), error: "bad", reason: "failed" },
  ]);
  assert.deepEqual(args, [
    "15",
    keys.stream,
    keys.dead,
    keys.delayed,
    keys.payloads,
    keys.waiters,
    keys.events,
    // A batch with a dead letter names the group keys: the entry may be a grouped job's.
    ...[keys.groups, keys.groupJobs, keys.groupLines, keys.groupSlots],
    keys.job("a"),
    keys.job("b"),
    keys.job("c"),
    keys.job("d"),
    keys.job("e"),
    "g",
    keys.wake,
    keys.done,
    "5",
    String(7 * 24 * 3_600_000),
    "7",
    "c",
    keys.jobPrefix,
    "9-0",
    "100-0",
    "", // the lowest priority's stream: no field pri to write
    "g", // the group keys are given
    "", // no events
    "", // no webhooks
    "", // no events: no tasks
    ...["", "0"], // nor acked ids
    ...["ack", "10-5", "2", '"r"', "9 2 c"],
    ...["bury", "9-0", "1", "e", "x"],
    ...["retry", "100-0", "2", "30", "boom"],
    ...["release", "10-10", "2", "", ""],
    ...["cancel", "11-0", "2", "", " 2 c"],
    ...["dead", "12-0", "2", "bad", "failed"],
    // With the group keys, each operation's group follows ('' for none).
    ...["acme", "", "", "", "", ""],
  ]);
});

Deno.test("a malformed entry dead-lettered leaves alone the job whose id is malformed:<its entry id>", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, logger: quiet });
  await using db = inspect(redis.url);
  await using sub = inspect(redis.url);
  await db.xgroup("CREATE", queue.keys.stream, queue.group, "0", "MKSTREAM");
  await db.xadd(queue.keys.stream, "1-1", "foo", "bar"); // no id: malformed
  const victim = await queue.enqueue("t", "x", { id: "malformed:1-1", delay: 600_000 });
  const before = await db.hgetall(queue.keys.job(victim.id));
  const messages: string[] = [];
  sub.on("message", (_channel: string, message: string) => messages.push(message));
  await sub.subscribe(queue.keys.done + victim.id);

  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal }).getReader();
  const reading = reader.read();
  await waitForRedis(async () => (await db.xlen(queue.keys.dead)) === 1, "the entry buried");
  await waitForRedis(async () => (await pendingCount(db, queue.keys.stream)) === 0, "acked");
  controller.abort();
  assert.equal((await reading).done, true);

  assert.deepEqual(await db.hgetall(queue.keys.job(victim.id)), before, "the record is intact");
  assert.equal((await victim.info())?.state, "delayed");
  // Messages arrive in order: once this one is in, a false outcome would have been too.
  await db.publish(queue.keys.done + victim.id, "fence");
  await waitForRedis(() => Promise.resolve(messages.includes("fence")), "the fence");
  assert.deepEqual(messages, ["fence"], "no outcome was published for the victim");
});

Deno.test("replaying a dead letter without a job id leaves alone the job whose id is dead:<its deadId>", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, logger: quiet });
  await using db = inspect(redis.url);
  await db.xadd(queue.keys.dead, "1-1", "entry", "0-1", "error", "gone", "reason", "malformed");
  const victim = await queue.enqueue("t", "x", { id: "dead:1-1", delay: 600_000 });
  const before = await db.hgetall(queue.keys.job(victim.id));
  assert.equal(await queue.dead.replay(["1-1"]), 1);
  assert.equal(await db.xlen(queue.keys.dead), 0);
  const [[, fields]] = (await db.xrange(queue.keys.stream, "-", "+")) as [[string, string[]]];
  assert.deepEqual(fields, ["entry", "0-1"], "the letter went back as it was");
  assert.deepEqual(await db.hgetall(queue.keys.job(victim.id)), before, "the record is intact");
});

Deno.test("PROMOTE moves a due id once however often it is sent, and never one made due later meanwhile", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, keepResult: 0, logger: quiet });
  await using db = inspect(redis.url);
  await using shared = sharedRedis(redis.url);
  const client = shared.command;
  await queue.enqueue("t", 1, { id: "d", at: Date.now() - 1_000 });
  await queue.enqueue("t", 2, { id: "e", at: Date.now() - 1_000 });
  await queue.enqueue("t", 3, { id: "later", delay: 600_000 });
  const [ids, wait] = await client.sluiceDue(dueArgs(queue, 10));
  assert.deepEqual([[...ids].sort(), wait], [["d", "e"], 0]);
  // e is cancelled, then enqueued again to run much later, between the two steps.
  await queue.job("e").cancel();
  await queue.enqueue("t", 4, { id: "e", delay: 600_000 });

  const q = { keys: queue.keys, lanes: lanesOf("test", queue.keys) };
  const [moved, next] = await client.sluicePromote(promoteArgs(q, ids));
  assert.equal(moved, 1);
  assert.ok(next > 500_000 && next <= 600_000, `next due in ${next} ms`);
  const [again] = await client.sluicePromote(promoteArgs(q, ids));
  assert.equal(again, 0, "a racer sending the same ids moves none");
  const entries = await db.xrange(queue.keys.stream, "-", "+");
  assert.deepEqual(entries.map(([, f]) => f[f.indexOf("id") + 1]), ["d"]);
  assert.equal(await db.hget(queue.keys.job("d"), "entry"), entries[0]![0]);
  assert.equal(await db.hget(queue.keys.job("d"), "state"), "waiting");
  assert.notEqual(await db.zscore(queue.keys.delayed, "e"), null, "e is still delayed");
  assert.notEqual(await db.hget(queue.keys.payloads, "e"), null);
  assert.equal(await db.hget(queue.keys.job("e"), "state"), "delayed");
});

Deno.test("RETIRE gives back only what is still pending under the consumer; retire() pages through the rest and deletes it", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, logger: quiet });
  await using db = inspect(redis.url);
  await using shared = sharedRedis(redis.url);
  const client = shared.command;
  const q = { keys: queue.keys, group: queue.group, keepResult: 60_000 };
  await db.xgroup("CREATE", queue.keys.stream, queue.group, "0", "MKSTREAM");
  await queue.enqueueMany("t", [{ id: "a", data: 1 }, { id: "b", data: 2 }]);
  await db.xreadgroup("GROUP", queue.group, "c1", "COUNT", 2, "STREAMS", queue.keys.stream, ">");
  const held = await client.sluiceHeld(heldArgs(q, "c1", "-", 100));
  const [entryA, , entryB] = held;
  assert.deepEqual([held[1], held[3]], ["a", "b"]);
  // A peer claims b between the two steps: it is the peer's now.
  await db.xclaim(queue.keys.stream, queue.group, "c2", 0, entryB!);
  assert.equal(await client.sluiceRetire(retireArgs(q, "c1", held)), 1);
  const pending = await db.xpending(queue.keys.stream, queue.group, "-", "+", 10) as unknown[][];
  assert.deepEqual(pending.map(([entry, consumer]) => [entry, consumer]), [[entryB, "c2"]]);
  const readded = await db.hget(queue.keys.job("a"), "entry");
  assert.notEqual(readded, entryA);
  assert.equal((await db.xrange(queue.keys.stream, readded!, readded!)).length, 1);

  // 250 pending, more than one step holds.
  const many = Array.from({ length: 250 }, (_, i) => ({ id: `m${i}`, data: i }));
  await queue.enqueueMany("t", many);
  await db.xreadgroup("GROUP", queue.group, "c3", "COUNT", 300, "STREAMS", queue.keys.stream, ">");
  assert.equal(await pendingCount(db, queue.keys.stream), 252);
  await db.zadd(queue.keys.workers, Date.now() + 60_000, "c3");
  assert.equal(await retire(client, q, "c3"), 251, "a and the 250");
  assert.equal(await pendingCount(db, queue.keys.stream), 1, "only the peer's b");
  const consumers = (await db.xinfo("CONSUMERS", queue.keys.stream, queue.group)) as string[][];
  assert.ok(!consumers.some((c) => c[1] === "c3"), "c3 was deleted");
  assert.equal(await db.zscore(queue.keys.workers, "c3"), null);
});

import assert from "node:assert/strict";
import { CancelledError, type Job, Queue } from "../mod.ts";
import { settlesWithin } from "../src/async.ts";
import { startRedis } from "../src/testing.ts";
import { inspect, pendingCount, waitForRedis } from "./_helpers.ts";

/** Reads `n` jobs from a consume() stream, keeping them held. */
async function take(reader: ReadableStreamDefaultReader<Job>, n: number): Promise<Job[]> {
  const jobs: Job[] = [];
  for (let i = 0; i < n; i++) jobs.push((await reader.read()).value!);
  return jobs;
}

Deno.test("a held job keeps finished entries near it in the stream; stats() still counts right", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  await queue.enqueueMany("t", Array.from({ length: 301 }, (_, i) => ({ data: i })));
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal, prefetch: 301 }).getReader();
  const [pinned, ...rest] = await take(reader, 301);
  for (const job of rest) await job.ack();
  // Finished, but newer than the oldest pending delivery by well under 5 s: left for a trim.
  assert.ok(await db.xlen(queue.keys.stream) > 1, "finished entries wait for the trim");
  await queue.enqueue("t", "late");
  const stats = await queue.stats();
  assert.deepEqual([stats.waiting, stats.active], [1, 1]);
  await pinned!.ack();
  const [late] = await take(reader, 1);
  await late!.ack();
  controller.abort();
  await reader.cancel();
  assert.equal(await db.xlen(queue.keys.stream), 0, "once nothing is pending, all is trimmed");
  assert.equal(await pendingCount(db, queue.keys.stream), 0);
});

Deno.test("entries acked more than 5 s of stream time past a held job are deleted at once", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  await queue.enqueue("t", "slow");
  // Entries added 10 s later in stream time, by raw XADD with explicit ids.
  const [first] = await db.xrange(queue.keys.stream, "-", "+");
  const later = Number(first![0].split("-")[0]) + 10_000;
  for (let i = 0; i < 3; i++) {
    await db.xadd(
      queue.keys.stream,
      `${later}-${i}`,
      ...["v", "1", "id", `far${i}`, "task", "t", "data", "1", "attempt", "1", "enq", "1"],
    );
  }
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal, prefetch: 4 }).getReader();
  const [slow, ...far] = await take(reader, 4);
  assert.equal(slow!.data, "slow");
  for (const job of far) await job.ack();
  const left = await db.xrange(queue.keys.stream, "-", "+");
  assert.deepEqual(left.map(([id]) => id), [first![0]], "only the held job's entry is left");
  await slow!.ack();
  controller.abort();
  await reader.cancel();
  assert.equal(await db.xlen(queue.keys.stream), 0);
});

Deno.test("stats() counts waiting jobs exactly after a cancel deleted one ahead of the group", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const handles = await queue.enqueueMany("t", Array.from({ length: 10 }, (_, i) => ({ data: i })));
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal, prefetch: 2 }).getReader();
  const held = await take(reader, 2);
  assert.equal((await handles[5]!.cancel()).cancelled, true);
  const stats = await queue.stats();
  assert.equal(stats.lag, null, "Redis cannot tell the lag past a deleted entry");
  assert.deepEqual([stats.waiting, stats.active], [7, 2]);
  for (const job of held) await job.ack();
  controller.abort();
  await reader.cancel();
});

Deno.test("a cancel message that beats the read reply still stops the job it names", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const controller = new AbortController();
  const reader = queue.consume({ signal: controller.signal }).getReader();
  const next = reader.read();
  await waitForRedis(
    async () => ((await db.pubsub("NUMSUB", queue.keys.cancel)) as [string, number])[1] === 1,
    "the consumer to subscribe",
  );
  // The message lands before the job is even enqueued, as if it overtook the read reply.
  await db.publish(queue.keys.cancel, "x");
  await queue.enqueue("t", null, { id: "x" });
  const job = (await next).value!;
  const aborted = job.signal.aborted ||
    new Promise((resolve) => job.signal.addEventListener("abort", resolve, { once: true }));
  assert.ok(await settlesWithin(Promise.resolve(aborted), 10_000), "the job's signal aborts");
  assert.ok(job.signal.reason instanceof CancelledError);
  await job.ack();
  controller.abort();
  await reader.cancel();
});

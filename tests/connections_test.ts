// Connections per process: one command connection and one subscriber per Redis, shared by every
// Queue, Worker, consumer and job handle, plus one blocking connection per consumer.
import assert from "node:assert/strict";
import { Queue, task, Worker } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { inspect, waitForRedis } from "./_helpers.ts";

const quiet = { info() {}, warn() {}, error() {} };

/** sluice's connections to this Redis, by role, from CLIENT LIST. */
async function roles(db: ReturnType<typeof inspect>): Promise<string[]> {
  const list = await db.client("LIST") as string;
  return [...list.matchAll(/ name=sluice:(\w+):/g)].map((m) => m[1]!).sort();
}

Deno.test("a plain Worker holds 3 connections: command, subscriber and one blocking", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  const done = Promise.withResolvers<void>();
  const echo = task("echo", (n: number) => n);
  await using queue = new Queue("q", { redis: redis.url });
  const worker = new Worker("q", [echo], {
    redis: redis.url,
    concurrency: 8,
    handleSignals: false,
    logger: quiet,
  });
  worker.addEventListener("completed", () => done.resolve());
  const run = worker.run();
  // The producer's enqueue shares the worker's command connection.
  await queue.enqueue(echo, 1);
  await done.promise;
  assert.deepEqual(await roles(db), ["blocking", "command", "subscriber"]);
  await worker.stop();
  await run;
});

Deno.test("producing, awaiting a result, a Worker on one queue and consume() of another: 4 connections", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  const double = task("double", (n: number) => 2 * n);
  await using producer = new Queue("a", { redis: redis.url });
  await using other = new Queue("b", { redis: redis.url });
  const worker = new Worker("a", [double], {
    redis: redis.url,
    concurrency: 4,
    handleSignals: false,
    logger: quiet,
  });
  const run = worker.run();
  const handle = await producer.enqueue(double, 21);
  assert.equal(await handle.result({ signal: AbortSignal.timeout(10_000) }), 42);
  await other.enqueue("t", "x");
  const controller = new AbortController();
  for await (const job of other.consume({ signal: controller.signal })) {
    assert.equal(job.data, "x");
    // Everything is open now: the result's subscription, both consumers' reads.
    assert.deepEqual(await roles(db), ["blocking", "blocking", "command", "subscriber"]);
    await job.ack();
    controller.abort();
  }
  await worker.stop();
  await run;
});

Deno.test("closing the last user closes the shared connections; others keep them", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  const first = new Queue("a", { redis: redis.url });
  const second = new Queue("b", { redis: redis.url });
  await first.enqueue("t", 1);
  await second.enqueue("t", 2);
  assert.deepEqual(await roles(db), ["command"]);
  await first.close();
  assert.equal((await second.stats()).waiting, 1, "the second queue still talks to Redis");
  assert.deepEqual(await roles(db), ["command"]);
  await second.close();
  // QUIT is answered before the server drops the connection: wait for it to go.
  await waitForRedis(async () => (await roles(db)).length === 0, "no sluice connection left");
});

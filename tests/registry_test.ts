/**
 * The worker registry: each worker's heartbeat record, listed by `queue.workers()` from any
 * process, gone when the worker stops, and dropped after kill -9 once its heartbeat runs out.
 */
import assert from "node:assert/strict";
import { Queue, task, Worker } from "../mod.ts";
import { startCluster, startRedis } from "../src/testing.ts";
import { inspect, waitForRedis, WorkerProcess } from "./_helpers.ts";
import { VERSION } from "../src/version.ts";

Deno.test("queue.workers() lists each worker process's record; kill -9 drops off, a stop deletes it", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  // Heartbeats every 200 ms, lasting 1.8 s.
  await using a = new WorkerProcess(redis.url, { concurrency: 3, idle: 600 });
  await using b = new WorkerProcess(redis.url, { concurrency: 2, idle: 600 });
  await queue.enqueueMany("sleep", Array.from({ length: 10 }, () => ({ data: { ms: 1 } })));
  const live = await waitForRedis(async () => {
    const workers = await queue.workers();
    const processed = workers.reduce((n, w) => n + (w.processed ?? 0), 0);
    return workers.length === 2 && processed === 10 ? workers : undefined;
  }, "both workers, with the 10 jobs processed");
  const byPid = new Map(live.map((w) => [w.pid, w]));
  for (const [child, concurrency] of [[a, 3], [b, 2]] as const) {
    const info = byPid.get(child.pid);
    assert.ok(info, `worker ${child.pid} listed: ${JSON.stringify(live)}`);
    assert.equal(info.concurrency, concurrency);
    assert.equal(info.version, VERSION);
    assert.equal(info.host, Deno.hostname());
    assert.equal(info.failed, 0);
    assert.equal(info.running, 0);
    assert.equal(typeof info.id, "string");
    assert.ok(info.startedAt! <= info.heartbeatAt!, "started before its last heartbeat");
    assert.ok(info.expiresAt > Date.now() - 1_000, "a heartbeat in the future");
  }
  assert.equal((await queue.stats()).workers, 2);
  await using db = inspect(redis.url);
  // kill -9: no goodbye. It drops off once its heartbeat runs out, and the survivor's prune
  // deletes its record.
  a.signal("SIGKILL");
  await a.status;
  await waitForRedis(async () => {
    const workers = await queue.workers();
    return workers.length === 1 && workers[0]!.pid === b.pid;
  }, "the killed worker dropped off");
  await waitForRedis(async () => (await db.hlen(queue.keys.registry)) === 1, "its record pruned");
  assert.equal((await queue.stats()).workers, 1);
  // A graceful stop deletes the record at once.
  b.signal("SIGTERM");
  assert.equal((await b.status).code, 0);
  assert.deepEqual(await queue.workers(), []);
  assert.equal(await db.hlen(queue.keys.registry), 0);
});

Deno.test("a consume() stream is listed too; VERSION is deno.json's version", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  assert.equal(VERSION, config.version);
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const stop = new AbortController();
  const stream = queue.consume({ signal: stop.signal });
  const reader = stream.getReader();
  const first = reader.read();
  const [info] = await waitForRedis(async () => {
    const workers = await queue.workers();
    return workers.length === 1 ? workers : undefined;
  }, "the stream listed");
  assert.equal(info!.pid, Deno.pid);
  assert.equal(info!.held, 0);
  assert.equal(info!.concurrency, undefined, "a stream has no concurrency");
  stop.abort();
  assert.equal((await first).done, true);
  reader.releaseLock();
  // The stream ends first; it retires (and deletes its record) right behind.
  await waitForRedis(async () => (await queue.workers()).length === 0, "the stream gone");
});

Deno.test("on Redis Cluster: the registry and metrics of a worker", async () => {
  await using cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
  const redis = { cluster: [...cluster.urls] };
  await using queue = new Queue("q", { redis });
  const worker = new Worker("q", [task("t", () => {})], {
    redis,
    concurrency: 2,
    metrics: {},
    handleSignals: false,
    logger: { warn() {}, error() {} },
  });
  const run = worker.run();
  try {
    const [info] = await waitForRedis(async () => {
      const live = await queue.workers();
      return live.length === 1 ? live : undefined;
    }, "the worker listed");
    assert.equal(info!.concurrency, 2);
    assert.equal(info!.id, worker.consumer);
    const done = Promise.withResolvers<void>();
    worker.addEventListener("completed", () => done.resolve());
    await queue.enqueue("t", 1);
    await done.promise;
    assert.equal(worker.metrics().jobs[0]?.completed, 1);
  } finally {
    await worker.stop();
    await run;
  }
  assert.deepEqual(await queue.workers(), []);
});

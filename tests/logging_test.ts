/**
 * Logs: the default logger writes one JSON object per event with the queue, the worker and
 * the job; "text" writes lines; a custom logger gets the same records; payloads never appear.
 */
import assert from "node:assert/strict";
import { type LogRecord, Queue, task, Worker } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { inspect, waitForRedis, WorkerProcess } from "./_helpers.ts";

const SECRET = "card-4242-4242";

Deno.test("the default logger writes JSON lines: queue, worker_id, and the job's id, task and attempt", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new WorkerProcess(redis.url, { logger: "json" });
  const handle = await queue.enqueue("badbackoff", { secret: SECRET });
  // A malformed entry (no task) with an id: dead-lettered, with a warning naming the job.
  await using db = inspect(redis.url);
  await db.xadd(queue.keys.stream, "*", "v", "1", "id", "broken-1", "data", "{}");
  // Both dead-lettered: the malformed entry and the job.
  await waitForRedis(async () => (await queue.stats()).dead === 2, "2 dead letters");
  assert.equal((await handle.info())?.state, "dead");
  worker.signal("SIGTERM");
  assert.equal((await worker.status).code, 0);
  const records = worker.stderr.filter((l) => l.startsWith("{")).map((l) =>
    JSON.parse(l) as LogRecord
  );
  assert.ok(records.length >= 3, worker.stderr.join("\n"));
  for (const r of records) {
    assert.equal(typeof r.time, "string");
    assert.ok(!Number.isNaN(Date.parse(r.time)), r.time);
    assert.ok(["info", "warn", "error"].includes(r.level), r.level);
    assert.equal(r.queue, "q");
  }
  const backoff = records.find((r) => r.msg.includes("backoff broke"));
  assert.ok(backoff, JSON.stringify(records));
  assert.equal(backoff.level, "error");
  assert.equal(backoff.job_id, handle.id);
  assert.equal(backoff.task, "badbackoff");
  assert.equal(backoff.attempt, 1);
  assert.equal(backoff.error?.message, "backoff broke");
  assert.equal(typeof backoff.worker_id, "string");
  const malformed = records.find((r) => r.msg.includes("went to the dead letters (malformed)"));
  // An entry that cannot be decoded has no job id to trust: the record names the worker.
  assert.equal(malformed?.level, "warn");
  assert.equal(malformed?.worker_id, backoff.worker_id);
  const stopped = records.find((r) => r.msg === "sluice: worker q stopped");
  assert.equal(stopped?.level, "info");
  // Never the payload.
  assert.ok(!worker.stderr.join("\n").includes(SECRET));
});

Deno.test('logger: "text" writes plain lines; a custom logger gets each message with its record', async () => {
  await using redis = await startRedis();
  await using text = new WorkerProcess(redis.url, { logger: "text" });
  await waitForRedis(async () => {
    await using q = new Queue("q", { redis: redis.url });
    return (await q.workers()).length === 1;
  }, "the text worker up");
  text.signal("SIGTERM");
  assert.equal((await text.status).code, 0);
  // console.info: on stdout, which WorkerProcess files with stderr, marked.
  assert.ok(
    text.stderr.some((l) => l === "stdout: sluice: worker q stopped"),
    text.stderr.join("\n"),
  );
  assert.ok(!text.stderr.some((l) => l.includes("{")), text.stderr.join("\n"));

  await using queue = new Queue("q", { redis: redis.url });
  const seen: [string, LogRecord | undefined][] = [];
  const logger = {
    info: (m: string, r?: LogRecord) => void seen.push([m, r]),
    warn: (m: string, r?: LogRecord) => void seen.push([m, r]),
    error: (m: string, _e?: unknown, r?: LogRecord) => void seen.push([m, r]),
  };
  const worker = new Worker("q", [task("t", () => {})], {
    redis: redis.url,
    logger,
    handleSignals: false,
  });
  worker.addEventListener("completed", () => worker.stop());
  await queue.enqueue("t", 1);
  await worker.run();
  const stopped = seen.find(([m]) => m === "sluice: worker q stopped");
  assert.ok(stopped, JSON.stringify(seen));
  assert.equal(stopped[1]?.level, "info");
  assert.equal(stopped[1]?.queue, "q");
  assert.equal(stopped[1]?.worker_id, worker.consumer);
});

Deno.test("logger option edges: json, text or an object with warn and error", () => {
  for (const logger of ["xml", 1, null, {}, { warn() {} }, { warn() {}, error: 1 }]) {
    assert.throws(
      () =>
        // deno-lint-ignore no-explicit-any
        new Worker("q", [task("t", () => {})], { logger: logger as any, handleSignals: false }),
      {
        name: "TypeError",
        message: new RegExp(
          '^Cannot create queue: logger must be "json", "text" or an object with warn and error functions, got ',
        ),
      },
      String(logger),
    );
  }
  for (const logger of ["json", "text", console] as const) {
    new Worker("q", [task("t", () => {})], { logger, handleSignals: false });
  }
});

/**
 * Metrics of a worker process, read the way operators read them: `/metrics` scraped over HTTP
 * and checked against a ledger kept in another Redis, `/readyz` while Redis is down and back,
 * and OpenTelemetry through Deno's own exporter.
 */
import assert from "node:assert/strict";
import { Queue } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { freePort } from "../src/testing/_process.ts";
import { inspect, parseMetrics, waitForRedis, WorkerProcess } from "./_helpers.ts";
import { delay } from "../src/async.ts";

/** GETs `url`; undefined if nothing answers. */
async function get(url: string): Promise<{ status: number; text: string } | undefined> {
  try {
    const res = await fetch(url);
    return { status: res.status, text: await res.text() };
  } catch {
    return undefined;
  }
}

Deno.test("a worker process's /metrics, scraped over HTTP, equals what its ledger saw", async () => {
  await using redis = await startRedis();
  await using ledger = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const port = freePort();
  await using worker = new WorkerProcess(redis.url, {
    ledger: ledger.url,
    concurrency: 4,
    prefetch: 4,
    metrics: port,
  });
  await queue.enqueueMany("work", Array.from({ length: 40 }, () => ({ data: { ms: 2 } })));
  // "throw" fails all 3 of its attempts: 2 retries, then a dead letter, each.
  await queue.enqueueMany("throw", Array.from({ length: 5 }, () => ({ data: null })));
  await using books = inspect(ledger.url);
  await waitForRedis(async () => (await books.hlen("commits")) === 40, "40 commits");
  await waitForRedis(async () => (await queue.stats()).dead === 5, "5 dead letters");
  const base = `http://127.0.0.1:${port}`;
  const scraped = await waitForRedis(async () => {
    const res = await get(`${base}/metrics`);
    if (res?.status !== 200) return undefined;
    const values = parseMetrics(res.text);
    const dead = values.get('sluice_jobs_dead_total{queue="q",task="throw",reason="failed"}');
    return dead === 5 ? values : undefined;
  }, "the dead letters counted");
  const commits = Object.values(await books.hgetall("commits")).map(Number);
  assert.equal(commits.length, 40);
  assert.equal(
    scraped.get('sluice_jobs_completed_total{queue="q",task="work"}'),
    commits.reduce((a, b) => a + b, 0),
  );
  assert.equal(scraped.get('sluice_jobs_retried_total{queue="q",task="throw"}'), 10);
  assert.equal(scraped.get('sluice_jobs_completed_total{queue="q",task="throw"}'), 0);
  assert.equal(scraped.get('sluice_job_run_seconds_count{queue="q",task="work"}'), 40);
  assert.equal(scraped.get('sluice_job_pickup_seconds_count{queue="q",task="throw"}'), 15);
  assert.equal(scraped.get('sluice_queue_jobs{queue="q",state="dead"}'), 5);
  assert.equal(scraped.get('sluice_worker_held_jobs{queue="q"}'), 0);
  assert.deepEqual(await get(`${base}/healthz`), { status: 200, text: "ok\n" });
  assert.deepEqual(await get(`${base}/readyz`), { status: 200, text: "ready\n" });
  worker.signal("SIGTERM");
  assert.equal((await worker.status).code, 0);
  assert.equal(await get(`${base}/healthz`), undefined, "nothing listens after exit");
});

Deno.test("/readyz turns 503 while Redis is down and 200 once it is back; /metrics still answers", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const port = freePort();
  await using worker = new WorkerProcess(redis.url, { metrics: port });
  const base = `http://127.0.0.1:${port}`;
  await waitForRedis(async () => (await get(`${base}/readyz`))?.status === 200, "ready");
  await redis.kill();
  const down = await waitForRedis(async () => {
    const res = await get(`${base}/readyz`);
    return res?.status === 503 ? res : undefined;
  }, "not ready while Redis is down");
  assert.match(down.text, /^not ready: Redis connection is \w+/);
  const metrics = await get(`${base}/metrics`);
  assert.equal(metrics?.status, 200);
  assert.match(metrics!.text, /^sluice_worker_running_jobs\{queue="q"\} 0$/m);
  assert.deepEqual(await get(`${base}/healthz`), { status: 200, text: "ok\n" });
  await redis.restart();
  await waitForRedis(async () => (await get(`${base}/readyz`))?.status === 200, "ready again");
  // And it works again: a job enqueued now runs.
  const id = await queue.enqueue("sleep", { ms: 1 });
  await worker.waitFor((e) => e.ev === "completed" && e.id === id.id, "the job after");
  worker.signal("SIGTERM");
  assert.equal((await worker.status).code, 0);
});

Deno.test("with OTEL_DENO=true, Deno's exporter carries the worker's metrics", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using worker = new WorkerProcess(redis.url, { metrics: freePort(), concurrency: 2 }, {
    OTEL_DENO: "true",
    OTEL_EXPORTER_OTLP_PROTOCOL: "console",
    OTEL_METRIC_EXPORT_INTERVAL: "200",
  });
  await queue.enqueueMany("sleep", Array.from({ length: 6 }, () => ({ data: { ms: 1 } })));
  await worker.waitForCount("completed", 6);
  // The console exporter prints each metric, then one line per attribute set.
  const exported = () => {
    const lines = worker.stderr;
    const at = lines.findLastIndex((l) => l.includes("sluice.jobs.completed"));
    if (at === -1) return undefined;
    return lines.slice(at, at + 8).find((l) => /task=sleep\} value=6$/.test(l.trim()));
  };
  for (let i = 0; exported() === undefined; i++) {
    if (i > 200) assert.fail(`no sluice.jobs.completed of 6 in:\n${worker.stderr.join("\n")}`);
    await delay(50);
  }
  assert.ok(worker.stderr.some((l) => l.includes("sluice.job.run")), "the run-time histogram");
  worker.signal("SIGTERM");
  assert.equal((await worker.status).code, 0);
});

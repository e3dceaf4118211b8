// deno-lint-ignore-file no-console
/**
 * Metrics and health: a worker with `metrics` on serves /metrics (Prometheus text format),
 * /healthz and /readyz; the queue's events are followed as they happen, as any process could.
 * `deno run -A examples/observability.ts`, then, while it runs:
 *
 *   curl -s http://127.0.0.1:9464/metrics | grep sluice_jobs
 *   curl -si http://127.0.0.1:9464/readyz
 *
 * With `--port 0` it picks a free port and prints it. It stops by itself after a few seconds
 * (`--seconds 0`: runs until Ctrl-C).
 */
import { parseArgs } from "node:util";
import { NonRetryableError, Queue, task, Worker } from "../mod.ts";
import { delay } from "../src/async.ts";
import { exampleRedis } from "./_redis.ts";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "9464" },
    seconds: { type: "string", default: "3" },
  },
});
await using redis = await exampleRedis();
const resize = task("resize", async (image: { name: string; bad?: boolean }) => {
  await delay(5 + Math.random() * 20);
  if (image.bad) throw new NonRetryableError(`${image.name} is not an image`);
  return `${image.name}.webp`;
});

await using queue = new Queue("media", { redis: redis.url });
// Every job's events, tallied by type: what a dashboard would stream over SSE.
const following = new AbortController();
const tally: Record<string, number> = {};
const followed = (async () => {
  for await (const event of queue.events({ signal: following.signal })) {
    tally[event.type] = (tally[event.type] ?? 0) + 1;
  }
})();
const worker = new Worker("media", [resize], {
  redis: redis.url,
  concurrency: 4,
  metrics: { port: Number(values.port) },
});
const run = worker.run();
const images = Array.from(
  { length: 40 },
  (_, i) => ({ data: { name: `img${i}`, bad: i % 10 === 9 } }),
);
await queue.enqueueMany(resize, images);

// Wait until it listens and is ready, then scrape it as Prometheus would.
while (worker.metricsAddress === undefined) await delay(10);
const { hostname, port } = worker.metricsAddress;
const base = `http://${hostname}:${port}`;
console.log(`metrics on ${base}/metrics`);
while ((await fetch(`${base}/readyz`).then((r) => r.body?.cancel().then(() => r.status))) !== 200) {
  await delay(10);
}
while (
  worker.metrics().jobs.reduce((n, j) => n + j.completed + (j.dead["non-retryable"] ?? 0), 0) < 40
) {
  await delay(20);
}
const text = await (await fetch(`${base}/metrics`)).text();
for (const line of text.split("\n")) {
  if (/^sluice_(jobs_(completed|dead)_total|job_run_seconds_count|queue_jobs)/.test(line)) {
    console.log(line);
  }
}
const [counts] = worker.metrics().jobs;
const mean = (counts!.runSeconds.sum / counts!.runSeconds.count) * 1_000;
console.log(
  `in code: ${counts?.completed} completed, ${counts?.dead["non-retryable"]} dead, ` +
    `${counts?.runSeconds.count} runs of ${mean.toFixed(1)} ms on average`,
);
// The last events of the run are written with its last settle: wait for them.
while ((tally.completed ?? 0) + (tally.dead ?? 0) < 40) await delay(10);
following.abort();
await followed;
console.log(
  `events: ${
    ["waiting", "active", "completed", "dead"].map((type) => `${type} ${tally[type] ?? 0}`)
      .join(", ")
  }`,
);
if (Number(values.seconds) > 0) setTimeout(() => worker.stop(), Number(values.seconds) * 1_000);
await run;

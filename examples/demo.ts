// deno-lint-ignore-file no-console
/**
 * The demo: `deno task demo`. Starts a throwaway redis-server (unless REDIS_URL is set), runs
 * a worker and a producer in this process, shows live progress, prints a summary, and exits 0.
 *
 *   DEMO_JOBS=20000 deno task demo
 */
import { Queue, Worker } from "../mod.ts";
import { startRedis, type TestRedis } from "../src/testing.ts";
import { resize, sendEmail, tasks } from "./tasks.ts";

const total = Number(Deno.env.get("DEMO_JOBS") ?? 20_000);
if (!Number.isInteger(total) || total < 2) {
  console.error(`Cannot run the demo: DEMO_JOBS must be an integer >= 2, got ${total}`);
  Deno.exit(2);
}

let redis: TestRedis | undefined;
let url = Deno.env.get("REDIS_URL");
if (url === undefined) {
  redis = await startRedis();
  url = redis.url;
  console.log(`started a throwaway redis-server on ${url}`);
} else {
  console.log(`using REDIS_URL ${url}`);
}

const name = `demo-${Date.now()}`;
const queue = new Queue(name, { redis: url });
const worker = new Worker(name, tasks, {
  redis: url,
  concurrency: 64,
  prefetch: 64,
  handleSignals: true,
  logger: { info() {}, warn: console.warn, error: console.error },
});
const counts = { completed: 0, retried: 0, dead: 0 };
const allDone = Promise.withResolvers<void>();
const settled = () => counts.completed + counts.dead === total && allDone.resolve();
worker.addEventListener("completed", () => (counts.completed++, settled()));
worker.addEventListener("retrying", () => counts.retried++);
worker.addEventListener("dead", () => (counts.dead++, settled()));
const running = worker.run();

// The producer: half emails, half resizes (some flaky, a few invalid), in batches of 1,000.
const start = performance.now();
let enqueued = 0;
const producer = (async () => {
  for (let i = 0; i < total; i += 1_000) {
    const n = Math.min(1_000, total - i);
    const emails = Math.floor(n / 2);
    await queue.enqueueMany(
      sendEmail,
      Array.from({ length: emails }, (_, j) => ({
        data: { to: `user${i + j}@example.com`, subject: "welcome" },
      })),
    );
    await queue.enqueueMany(
      resize,
      Array.from({ length: n - emails }, (_, j) => ({
        data: { url: `/img/${i + j}.png`, width: (i + j) % 500 === 0 ? 0 : 100 + j },
      })),
    );
    enqueued += n;
  }
})();

const tty = Deno.stdout.isTerminal();
const encoder = new TextEncoder();
const show = () => {
  const seconds = (performance.now() - start) / 1000;
  const done = counts.completed + counts.dead;
  const line =
    `enqueued ${enqueued}/${total}  done ${done}  retried ${counts.retried}  dead ${counts.dead}  ${
      Math.round(done / seconds)
    } jobs/s`;
  Deno.stdout.writeSync(encoder.encode(tty ? `\r${line}\x1b[K` : `${line}\n`));
};
const ticker = setInterval(show, tty ? 100 : 1_000);
await producer;
await allDone.promise;
clearInterval(ticker);
show();
if (tty) console.log();
const seconds = (performance.now() - start) / 1000;

await worker.stop();
await running;
await queue.close();
await redis?.stop();
console.log(
  `summary: ${total} jobs in ${seconds.toFixed(2)} s (${Math.round(total / seconds)} jobs/s): ` +
    `${counts.completed} completed, ${counts.retried} retries, ${counts.dead} dead-lettered ` +
    `(width 0 is non-retryable)`,
);

// deno-lint-ignore-file no-console
/** Retries with backoff: a flaky task succeeds on its third attempt. `deno run -A examples/retries.ts` */
import { Queue, task, Worker } from "../mod.ts";
import { exampleRedis } from "./_redis.ts";

await using redis = await exampleRedis();
const flaky = task("flaky", (_: null, ctx) => {
  if (ctx.job.attempt < 3) throw new Error(`upstream said no (attempt ${ctx.job.attempt})`);
  return `ok on attempt ${ctx.job.attempt}`;
}, { retry: { attempts: 5, backoff: { type: "exponential", base: 100, jitter: false } } });

await using queue = new Queue("retries", { redis: redis.url });
await using worker = new Worker("retries", [flaky], { redis: redis.url, handleSignals: false });
worker.addEventListener("retrying", (e) => {
  console.log(`retrying in ${e.detail.delay} ms: ${e.detail.error.message}`);
});
const run = worker.run();
console.log(await (await queue.enqueue(flaky, null)).result());
await worker.stop();
await run;

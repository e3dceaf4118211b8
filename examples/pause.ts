// deno-lint-ignore-file no-console
/** Pausing a queue, starting a worker on it, then resuming. `deno run -A examples/pause.ts` */
import { Queue, task, Worker } from "../mod.ts";
import { exampleRedis } from "./_redis.ts";

await using redis = await exampleRedis();
let done = 0;
const allDone = Promise.withResolvers<void>();
const tick = task("tick", async (n: number) => {
  await new Promise((resolve) => setTimeout(resolve, 20));
  return n;
});
await using queue = new Queue("pause", { redis: redis.url });
await using worker = new Worker("pause", [tick], { redis: redis.url, handleSignals: false });
worker.addEventListener("completed", () => {
  if (++done === 20) allDone.resolve();
});

await queue.pause(); // from any process; within 1 s no worker starts another job
await queue.enqueueMany(tick, Array.from({ length: 20 }, (_, n) => ({ data: n }))); // still fine
const run = worker.run(); // a worker that starts while paused takes nothing
const stats = await queue.stats();
console.log(`paused: ${stats.paused}, waiting: ${stats.waiting}, completed: ${done}`);
await queue.resume(); // every worker hears it over pub/sub and goes on at once
await allDone.promise;
console.log(`resumed: ${await queue.isPaused() ? "no" : "yes"}, completed: ${done}`);
await worker.stop();
await run;

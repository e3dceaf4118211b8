// deno-lint-ignore-file no-console
/** Cancelling a delayed job and a running one. `deno run -A examples/cancel.ts` */
import { CancelledError, Queue, task, Worker } from "../mod.ts";
import { exampleRedis } from "./_redis.ts";

await using redis = await exampleRedis();
const started = Promise.withResolvers<void>();
const crunch = task("crunch", async (_: null, ctx) => {
  started.resolve();
  // Long work that honours its signal, as fetch() does.
  await new Promise((_, reject) =>
    ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason))
  );
});
await using queue = new Queue("cancel", { redis: redis.url });
await using worker = new Worker("cancel", [crunch], { redis: redis.url, handleSignals: false });
worker.addEventListener("cancelled", (e) => console.log(`worker: ${e.detail.job.id} cancelled`));
const run = worker.run();

const later = await queue.enqueue(crunch, null, { delay: 60_000 });
console.log("delayed:", await later.cancel());
const now = await queue.enqueue(crunch, null);
await started.promise;
console.log("running:", await now.cancel());
const outcome = await now.result().catch((err) => err);
console.log(
  `result() rejected with ${outcome instanceof CancelledError ? "CancelledError" : outcome}`,
);
await worker.stop();
await run;

// deno-lint-ignore-file no-console
/** Results you can await, and job status, from any process. `deno run -A examples/results.ts` */
import { Queue, task, Worker } from "../mod.ts";
import { exampleRedis } from "./_redis.ts";

await using redis = await exampleRedis();
const square = task("square", (n: number) => n * n);
await using queue = new Queue("results", { redis: redis.url });
await using worker = new Worker("results", [square], { redis: redis.url, handleSignals: false });
const run = worker.run();
const handle = await queue.enqueue(square, 12, { id: "square-12" });
const result: number = await handle.result({ signal: AbortSignal.timeout(5_000) });
console.log(`result ${result}`);
// Any process can look a job up by id.
const info = await queue.job("square-12").info();
console.log(`state ${info?.state}, took ${info!.finishedAt! - info!.startedAt!} ms`);
console.log(`again: duplicate=${(await queue.enqueue(square, 12, { id: "square-12" })).duplicate}`);
await worker.stop();
await run;

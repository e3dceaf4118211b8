// deno-lint-ignore-file no-console
/** Delayed jobs: run in 500 ms, on Redis's clock. `deno run -A examples/delayed.ts` */
import { Queue, task, Worker } from "../mod.ts";
import { exampleRedis } from "./_redis.ts";

await using redis = await exampleRedis();
const remind = task("remind", (text: string) => `${text} (ran at ${new Date().toISOString()})`);
await using queue = new Queue("delayed", { redis: redis.url });
await using worker = new Worker("delayed", [remind], { redis: redis.url, handleSignals: false });
const run = worker.run();
const handle = await queue.enqueue(remind, "stand up", { delay: 500 });
console.log(`due at ${new Date(handle.dueAt!).toISOString()}: ${(await handle.info())?.state}`);
console.log(await handle.result());
await worker.stop();
await run;

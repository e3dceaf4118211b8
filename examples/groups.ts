// deno-lint-ignore-file no-console
/**
 * Groups: one tenant's backlog does not starve another's few jobs, and no tenant runs more than
 * 2 jobs at once. `deno run -A examples/groups.ts`
 */
import { Queue, task, Worker } from "../mod.ts";
import { delay } from "../src/async.ts";
import { exampleRedis } from "./_redis.ts";

await using redis = await exampleRedis();
const order: string[] = [];
const running = new Map<string, number>();
let most = 0;
const allDone = Promise.withResolvers<void>();

const report = task("report", async (n: number, ctx) => {
  const tenant = ctx.job.group!;
  running.set(tenant, (running.get(tenant) ?? 0) + 1);
  most = Math.max(most, running.get(tenant)!);
  order.push(`${tenant}#${n}`);
  await delay(5);
  running.set(tenant, running.get(tenant)! - 1);
  if (order.length === 210) allDone.resolve();
});

await using queue = new Queue("reports", { redis: redis.url });
await using worker = new Worker("reports", [report], {
  redis: redis.url,
  concurrency: 8,
  groups: { concurrency: 2 },
  handleSignals: false,
});
const run = worker.run();
// The worker stores groups.concurrency before it reads: once a job ran, it is in force.
await queue.enqueue(report, 0, { group: "warm-up" });
while (order.length === 0) await delay(5);

// acme enqueues 200 reports, then globex 9: globex's start among acme's, not after them.
await queue.enqueueMany(
  report,
  Array.from({ length: 200 }, (_, n) => ({ data: n, group: "acme" })),
);
const globexAt = order.length;
await queue.enqueueMany(
  report,
  Array.from({ length: 9 }, (_, n) => ({ data: n, group: "globex" })),
);
console.log(
  await queue.groups.list().then((gs) => gs.map((g) => `${g.group}: ${g.waiting} waiting`)),
);
await allDone.promise;
const lastGlobex = order.findLastIndex((job) => job.startsWith("globex"));
console.log(`globex's 9 jobs all started within ${lastGlobex - globexAt} starts of their enqueue`);
console.log(`at most ${most} jobs of one tenant ran at once`);
await worker.stop();
await run;

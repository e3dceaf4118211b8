// deno-lint-ignore-file no-console
/** Three priorities: urgent jobs start before the rest. `deno run -A examples/priorities.ts` */
import { Queue, task, Worker } from "../mod.ts";
import { exampleRedis } from "./_redis.ts";

await using redis = await exampleRedis();
const priorities = ["bulk", "normal", "urgent"]; // lowest first; every producer and worker agree
const order: string[] = [];
const allDone = Promise.withResolvers<void>();
const mail = task("mail", (to: string, ctx) => {
  order.push(`${to} (${ctx.job.priority})`);
  if (order.length === 6) allDone.resolve();
});
await using queue = new Queue("mail", { redis: redis.url, priorities });

await queue.enqueueMany(
  mail,
  ["newsletter-1", "newsletter-2", "newsletter-3"].map((data) => ({ data })),
);
await queue.enqueue(mail, "digest", { priority: "normal" });
await queue.enqueue(mail, "password-reset", { priority: "urgent" });
await queue.enqueue(mail, "login-code", { priority: "urgent" });
console.log(`waiting: ${(await queue.stats()).waiting}`);

// One at a time, holding nothing ahead (prefetch 0): the order is exactly by priority.
await using worker = new Worker("mail", [mail], {
  redis: redis.url,
  priorities,
  prefetch: 0,
  handleSignals: false,
});
const run = worker.run();
await allDone.promise;
console.log(`order: ${order.join(", ")}`);
await worker.stop();
await run;

// deno-lint-ignore-file no-console
/**
 * Schedules: a static cron schedule on a task, and a dynamic interval schedule. Each tick runs
 * once, however many workers run. `deno run -A examples/schedules.ts`
 */
import { Queue, task, Worker } from "../mod.ts";
import { exampleRedis } from "./_redis.ts";

await using redis = await exampleRedis();
// Static: every Worker with this task stores the schedule (id "heartbeat") when it starts.
const heartbeat = task("heartbeat", (data: { from: string }) => `beat from ${data.from}`, {
  cron: "* * * * * *", // every second (6 fields: seconds first)
  tz: "Europe/Oslo",
  data: { from: "cron" },
});
const ping = task("ping", (data: { host: string }) => `ping ${data.host}`);
await using queue = new Queue("schedules", { redis: redis.url });
// Dynamic: from any process.
await queue.schedules.upsert("ping:example", { every: 700, task: ping, data: { host: "a" } });

await using worker = new Worker("schedules", [heartbeat, ping], {
  redis: redis.url,
  handleSignals: false,
});
let runs = 0;
worker.addEventListener("completed", (e) => {
  console.log(`${e.detail.job.id}: ${e.detail.result}`);
  if (++runs === 5) worker.stop();
});
await worker.run();
for (const s of await queue.schedules.list()) {
  console.log(`${s.id}: ${s.cron ?? `every ${s.every} ms`}, next ${s.next?.toISOString()}`);
}
await queue.schedules.remove("ping:example");
await queue.schedules.remove("heartbeat");

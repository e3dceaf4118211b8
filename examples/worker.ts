// deno-lint-ignore-file no-console
/**
 * A worker: the main job. Run it, then stop it with Ctrl-C (or SIGTERM): it stops reading,
 * gives back the jobs it has not started, and lets running ones finish.
 *
 *   REDIS_URL=redis://127.0.0.1:6379 deno run -A examples/worker.ts
 */
import { Worker } from "../mod.ts";
import { tasks } from "./tasks.ts";

const worker = new Worker(Deno.env.get("QUEUE") ?? "demo", tasks, {
  redis: Deno.env.get("REDIS_URL") ?? "redis://127.0.0.1:6379",
  concurrency: 32,
  gracePeriod: 10_000,
});
let completed = 0;
worker.addEventListener("completed", () => completed++);
worker.addEventListener(
  "dead",
  (e) => console.log(`dead: ${e.detail.job.id} (${e.detail.reason})`),
);
console.log(`worker ${Deno.pid} running; Ctrl-C to stop`);
await worker.run();
console.log(`worker ${Deno.pid} stopped after ${completed} jobs`);

/**
 * One worker process of the bench's scale-out rows: `deno run -A bench/_scale_worker.ts
 * <redis JSON> <queue> <jobs>`. Runs no-op jobs at concurrency 32 with no records kept until it
 * has done `jobs`, then prints one JSON line: when the first job started and when the last one
 * ended (epoch ms), and its own CPU time (µs).
 */
import process from "node:process";
import { task, Worker } from "../mod.ts";

const [redisJson, queue, jobsArg] = Deno.args;
const jobs = Number(jobsArg);
let done = 0, first = 0;
const finished = Promise.withResolvers<void>();
const noop = task("noop", () => {
  if (first === 0) first = Date.now();
  if (++done === jobs) finished.resolve();
});
const worker = new Worker(queue!, [noop], {
  redis: JSON.parse(redisJson!),
  concurrency: 32,
  keepResult: 0,
  handleSignals: false,
  logger: { warn() {}, error() {} },
});
const cpu = process.cpuUsage();
const run = worker.run();
await finished.promise;
const last = Date.now();
await worker.stop();
await run;
const used = process.cpuUsage(cpu);
// deno-lint-ignore no-console
console.log(JSON.stringify({ first, last, cpuUs: used.user + used.system }));

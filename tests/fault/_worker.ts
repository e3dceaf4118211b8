// deno-lint-ignore-file no-console
/**
 * A worker process for fault tests. It runs task "sleep" and prints one JSON line per event
 * on stdout, so tests wait on what happened instead of on the clock.
 *
 *   deno run -A tests/fault/_worker.ts --redis URL --queue q [--concurrency 1] [--prefetch 0]
 *     [--idle 30000] [--grace 10000] [--max-sleep ms]
 *
 * Task "sleep" data: { ms: number, ignoreSignal?: boolean }. It waits `ms` (capped by
 * --max-sleep) and honours ctx.signal unless told not to.
 */
import { parseArgs } from "node:util";
import { delay } from "../../src/async.ts";
import { task, Worker } from "../../mod.ts";

const { values } = parseArgs({
  options: {
    redis: { type: "string" },
    queue: { type: "string", default: "q" },
    concurrency: { type: "string", default: "1" },
    prefetch: { type: "string", default: "0" },
    idle: { type: "string", default: "30000" },
    grace: { type: "string", default: "10000" },
    "max-sleep": { type: "string", default: "3600000" },
  },
});
const maxSleep = Number(values["max-sleep"]);
const emit = (event: Record<string, unknown>) => console.log(JSON.stringify(event));

const sleep = task("sleep", async (data: { ms: number; ignoreSignal?: boolean }, ctx) => {
  const ms = Math.min(data.ms, maxSleep);
  try {
    await delay(ms, data.ignoreSignal ? {} : { signal: ctx.signal });
  } catch (err) {
    emit({ ev: "aborted", id: ctx.job.id, reason: (err as Error).name });
    throw err;
  }
  return ms;
}, { retry: { attempts: 1 } });

const worker = new Worker(values.queue, [sleep], {
  redis: values.redis!,
  concurrency: Number(values.concurrency),
  prefetch: Number(values.prefetch),
  idleTimeout: Number(values.idle),
  gracePeriod: Number(values.grace),
  logger: {
    info: (message) => emit({ ev: "info", message }),
    warn: (message) => emit({ ev: "warn", message }),
    error: (message) => emit({ ev: "log-error", message }),
  },
});
for (const type of ["started", "completed", "retrying", "dead", "cancelled"] as const) {
  worker.addEventListener(type, (e) => {
    const { job } = e.detail;
    emit({ ev: type, id: job.id, deliveries: job.deliveries, attempt: job.attempt });
  });
}
worker.addEventListener("error", (e) => {
  const { error, job } = e.detail;
  emit({ ev: "error", name: error.name, message: error.message, id: job?.id });
});
queueMicrotask(() => emit({ ev: "ready", pid: Deno.pid }));
await worker.run();
emit({ ev: "exited" });

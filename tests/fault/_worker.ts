// deno-lint-ignore-file no-console
/**
 * A worker process for fault tests. It runs task "sleep" and prints one JSON line per event
 * on stdout, so tests wait on what happened instead of on the clock.
 *
 *   deno run -A tests/fault/_worker.ts --redis URL|JSON --queue q [--concurrency 1] [--prefetch 0]
 *     [--idle 30000] [--grace 10000] [--max-sleep ms] [--max-deliveries 5] [--ledger URL]
 *     [--max-payload bytes] [--durable replicas:timeout] [--cron "expression"]
 *     [--priorities bulk,normal,urgent] [--rate limit:interval] [--groups concurrency]
 *     [--metrics port] [--logger json|text]
 *
 * --redis is a URL, or ioredis options as JSON (Redis Cluster, Sentinel). --durable turns
 * durable mode on.
 *
 * Job events carry `at`, the time (epoch ms) the worker fired them.
 *
 * Task "sleep" data: { ms: number, ignoreSignal?: boolean }. It waits `ms` (capped by
 * --max-sleep) and honours ctx.signal unless told not to. Task "progress" ({ steps }) reports
 * ctx.progress({ step, of }) for each step.
 *
 * With --ledger (a Redis that is not the one under test), tasks "work", "crash" and "throw"
 * are there too. "work" ({ ms }) waits, then records its commit in the ledger before it
 * returns: HINCRBY commits <id> 1 and RPUSH log {id, deliveries, pid, entry, at, priority}
 * (the stream entry id of the delivery, the time, and the job's priority if it has one). "crash" kills its own
 * process with SIGKILL. "throw" always throws (3 attempts, 10 ms apart). "limited" ({ ms }),
 * with --rate's limit per interval, and "api" ({ ms, hold? }) record their start first:
 * RPUSH starts {id, task, attempt, pid, at}. "api" then says 429 (`ctx.rateLimited(hold)`)
 * the first time a job with `hold` runs (SET held:<id> NX in the ledger). "grouped" ({ ms })
 * counts its group's running jobs in the ledger (INCR run:<group>, the most at once in hash
 * most), waits, then DECRs and records HINCRBY commits <id> 1. --groups sets the Worker's
 * groups.concurrency. --metrics turns the Worker's metrics on, served on that port. --logger
 * uses sluice's own logger of that kind (on stderr) instead of the JSON event lines. Task
 * "badbackoff" fails with a backoff function that throws (2 attempts).
 */
import { parseArgs } from "node:util";
import { delay } from "../../src/async.ts";
import { Redis } from "ioredis";
import { type AnyTask, type Job, task, Worker } from "../../mod.ts";

const { values } = parseArgs({
  options: {
    redis: { type: "string" },
    queue: { type: "string", default: "q" },
    concurrency: { type: "string", default: "1" },
    prefetch: { type: "string", default: "0" },
    idle: { type: "string", default: "30000" },
    grace: { type: "string", default: "10000" },
    "max-sleep": { type: "string", default: "3600000" },
    "max-deliveries": { type: "string", default: "5" },
    ledger: { type: "string" },
    "max-payload": { type: "string", default: "1048576" },
    durable: { type: "string" },
    cron: { type: "string" },
    priorities: { type: "string" },
    rate: { type: "string" },
    groups: { type: "string" },
    metrics: { type: "string" },
    logger: { type: "string" },
  },
});
const [replicas, timeout] = (values.durable ?? "").split(":").map(Number);
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

// Reports progress { step, of } for each of `steps` steps.
const progress = task("progress", async (data: { steps: number }, ctx) => {
  for (let step = 1; step <= data.steps; step++) {
    await ctx.progress({ step, of: data.steps });
    await delay(1);
  }
});
const badBackoff = task("badbackoff", () => {
  throw new Error("handler failed");
}, {
  retry: {
    attempts: 2,
    backoff: () => {
      throw new Error("backoff broke");
    },
  },
});
const tasks: AnyTask[] = [sleep, progress, badBackoff];
// --cron: a task "tick" with that static schedule, which every such worker stores at start.
if (values.cron !== undefined) tasks.push(task("tick", () => Date.now(), { cron: values.cron }));
const ledger = values.ledger ? new Redis(values.ledger) : undefined;
/** Ledger Lua: one more running in a group (KEYS[1]), and the most at once (KEYS[2] field). */
const ENTER = `local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') then
  redis.call('HSET', KEYS[2], ARGV[1], n)
end
return n`;
const [limit, interval] = (values.rate ?? "").split(":").map(Number);
const rate = values.rate === undefined ? undefined : { limit: limit!, interval: interval! };
/** Records a handler's start in the ledger, with this machine's clock. */
async function started(job: { id: string; task: string; attempt: number }): Promise<void> {
  const at = Date.now();
  const { id, task, attempt } = job;
  await ledger!.rpush("starts", JSON.stringify({ id, task, attempt, pid: Deno.pid, at }));
}
if (ledger !== undefined) {
  tasks.push(
    task("work", async (data: { ms: number }, ctx) => {
      await delay(data.ms, { signal: ctx.signal });
      const entry = JSON.stringify({
        id: ctx.job.id,
        deliveries: ctx.job.deliveries,
        pid: Deno.pid,
        entry: (ctx.job as Job).entryId,
        at: Date.now(),
        priority: ctx.job.priority,
        polluted: ({} as Record<string, unknown>).polluted !== undefined,
      });
      await ledger.multi().hincrby("commits", ctx.job.id, 1).rpush("log", entry).exec();
    }),
    task("crash", () => Deno.kill(Deno.pid, "SIGKILL")),
    task("limited", async (data: { ms: number }, ctx) => {
      await started(ctx.job);
      await delay(data.ms, { signal: ctx.signal });
    }, rate === undefined ? {} : { rateLimit: rate }),
    task("api", async (data: { ms: number; hold?: number }, ctx) => {
      await started(ctx.job);
      if (data.hold && await ledger.set(`held:${ctx.job.id}`, "1", "NX")) {
        ctx.rateLimited(data.hold);
      }
      await delay(data.ms, { signal: ctx.signal });
    }),
    // Counts running jobs per group in the ledger, and keeps the most seen at once.
    task("grouped", async (data: { ms: number }, ctx) => {
      const group = ctx.job.group ?? "";
      await ledger.eval(ENTER, 2, `run:${group}`, "most", group);
      try {
        await delay(data.ms, { signal: ctx.signal });
      } finally {
        await ledger.decr(`run:${group}`);
      }
      await ledger.hincrby("commits", ctx.job.id, 1);
    }),
    task("throw", () => {
      throw new Error("poison");
    }, { retry: { attempts: 3, backoff: { type: "fixed", delay: 10 } } }),
  );
}

const worker = new Worker(values.queue, tasks, {
  // A JSON object (Redis Cluster, Sentinel) or a URL.
  redis: values.redis!.startsWith("{") ? JSON.parse(values.redis!) : values.redis!,
  ...(values.durable === undefined
    ? {}
    : { durability: { replicas: replicas!, timeout: timeout! } }),
  concurrency: Number(values.concurrency),
  prefetch: Number(values.prefetch),
  idleTimeout: Number(values.idle),
  gracePeriod: Number(values.grace),
  maxDeliveries: Number(values["max-deliveries"]),
  maxPayloadBytes: Number(values["max-payload"]),
  ...(values.priorities === undefined ? {} : { priorities: values.priorities.split(",") }),
  ...(values.groups === undefined ? {} : { groups: { concurrency: Number(values.groups) } }),
  ...(values.metrics === undefined ? {} : { metrics: { port: Number(values.metrics) } }),
  logger: values.logger === "json" || values.logger === "text" ? values.logger : {
    info: (message) => emit({ ev: "info", message }),
    warn: (message) => emit({ ev: "warn", message }),
    error: (message) => emit({ ev: "log-error", message }),
  },
});
for (
  const type of ["started", "completed", "retrying", "dead", "cancelled", "rateLimited"] as const
) {
  worker.addEventListener(type, (e) => {
    const { job } = e.detail;
    emit({
      ev: type,
      id: job.id,
      deliveries: job.deliveries,
      attempt: job.attempt,
      at: Date.now(),
    });
  });
}
worker.addEventListener("error", (e) => {
  const { error, job } = e.detail;
  emit({ ev: "error", name: error.name, message: error.message, id: job?.id });
});
queueMicrotask(() => emit({ ev: "ready", pid: Deno.pid }));
await worker.run();
ledger?.disconnect();
emit({ ev: "exited" });

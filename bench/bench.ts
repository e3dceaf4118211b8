// deno-lint-ignore-file no-console
/**
 * sluice's bench: `deno task bench [--quick] [--json] [--jobs N] [--no-peer]`.
 *
 * Everything runs in one process run against one Redis (a throwaway redis-server, or
 * REDIS_URL), so the ratios hold on a noisy machine:
 * - the floor: a bare Deno + ioredis loop (pipelined XADD, then XREADGROUP COUNT 200 + XACK);
 * - sluice: enqueueMany, a Worker with a no-op task at concurrency 1, 32 and 256 keeping no job
 *   records (`keepResult: 0`), and at concurrency 32 with `keepResult` at its default (24 h of
 *   records: the "c=32 defaults" row), at concurrency 32 on a queue of 3 priorities with a
 *   third of the jobs in each (the "c=32, 3 priorities" row, given against the c=32 row), at
 *   concurrency 32 for a task with a rate limit it never reaches (1M a second: the "c=32,
 *   rate-limited task" row, given against the c=32 row too), at concurrency 32 with every job in
 *   one of 100 groups of concurrency 4 (the "c=32, 100 groups of 4" row, against c=32 too),
 *   pickup latency at idle and at a fixed 2,000 jobs/s, delayed-job lateness, and the memory of
 *   a worker in its own process (c=32, default options) against the floor's loop in its own;
 * - BullMQ on Node (bench/peers/, installed here if missing) doing the same work: its no-record
 *   rows use `removeOnComplete: true`, its defaults row `removeOnComplete: { age: 86400 }`.
 *
 * Each contender first gets the same untimed warm-up of WARM_UP jobs in the process it is timed
 * in, so no row is measured with a cold JIT and none is favoured by running after the others.
 *
 * Besides jobs/s, every enqueue and processing row reports CPU per job (µs) on each side, which
 * holds steadier than jobs/s on a shared machine:
 * - worker: user + system time of the process doing the work (`process.cpuUsage()`): this one
 *   for the floor and sluice, the Node process for BullMQ (it measures its own);
 * - Redis: `used_cpu_user` + `used_cpu_sys` from INFO CPU (all of Redis, so REDIS_URL should
 *   point at a Redis nothing else uses).
 * Both are taken around the phase: the enqueue loop, or a worker's run() from its start until it
 * has stopped (so its last settles count). The floor's figures are the lower of its two runs.
 * For each processing row, INFO commandstats gives the script calls (EVALSHA + EVAL: settles and
 * the rest) and XREADGROUP calls per 1k jobs over the same phase, and the c=32 row's script calls
 * are also given per 300k jobs, the figure that must not grow across a refactor.
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { type AnyTask, Queue, task, Worker } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { scaleOut } from "./scale.ts";
import { measureDurability } from "./durable.ts";
import { storeGroupOptions } from "../src/groups.ts";
import { defineScripts } from "../src/scripts/mod.ts";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    jobs: { type: "string" },
    "no-peer": { type: "boolean", default: false },
  },
});
const quick = values.quick!;
const N = Number(values.jobs ?? (quick ? 20_000 : 100_000));
// Enough work to get the hot paths optimized: a worker's rate was still climbing over its first
// 100k jobs (45k/s, then 72k/s for the next 100k, in one process). The same for every contender.
const WARM_UP = Math.max(1, Math.min(N, 100_000));
const MEMORY_JOBS = quick ? 200_000 : 1_000_000;
const LOAD_SECONDS = quick ? 3 : 10;
const LATE_JOBS = 1_000;
const LATE_SPREAD_MS = quick ? 2_000 : 5_000;
const quiet = { warn() {}, error() {} };
const log = (line: string) => values.json || console.error(line);

await using server = Deno.env.get("REDIS_URL")
  ? { url: Deno.env.get("REDIS_URL")!, [Symbol.asyncDispose]: () => Promise.resolve() }
  : await startRedis();
const url = server.url;
const admin = new Redis(url);
/** The admin connection with sluice's scripts, to store a Worker's groups option up front. */
const scripted = defineScripts(new Redis(url));
let round = 0;
const fresh = () => `bench-${Date.now()}-${round++}`;
const rate = (n: number, ms: number) => Math.round(n / (ms / 1_000));

/** CPU (µs) spent so far by this process and by Redis, and Redis's count of some commands. */
interface Spent {
  worker: number;
  redis: number;
  scripts: number;
  xreadgroup: number;
}

async function spent(): Promise<Spent> {
  const cpu = await admin.info("cpu");
  const stats = await admin.info("commandstats");
  const field = (name: string) =>
    Number(cpu.match(new RegExp(`^${name}:([\\d.]+)`, "m"))?.[1] ?? 0);
  const calls = (command: string) =>
    Number(stats.match(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, "m"))?.[1] ?? 0);
  const { user, system } = process.cpuUsage();
  return {
    worker: user + system,
    redis: Math.round((field("used_cpu_user") + field("used_cpu_sys")) * 1e6),
    scripts: calls("evalsha") + calls("eval"),
    xreadgroup: calls("xreadgroup"),
  };
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/** CPU per job (µs) on each side between two readings. */
const cpuPerJob = (from: Spent, to: Spent, n: number) => ({
  worker: round2((to.worker - from.worker) / n),
  redis: round2((to.redis - from.redis) / n),
});

/** Script and XREADGROUP calls between two readings, as counted and per 1k jobs. */
const callsPerJob = (from: Spent, to: Spent, n: number) => ({
  jobs: n,
  scripts: to.scripts - from.scripts,
  xreadgroup: to.xreadgroup - from.xreadgroup,
  scriptsPer1k: round2(((to.scripts - from.scripts) / n) * 1_000),
  xreadgroupPer1k: round2(((to.xreadgroup - from.xreadgroup) / n) * 1_000),
});

async function floor(n = N) {
  const key = fresh();
  const fields = ["v", "1", "id", crypto.randomUUID(), "task", "noop", "data", "null"];
  fields.push("attempt", "1", "enq", String(Date.now()));
  let before = await spent();
  let started = performance.now();
  for (let i = 0; i < n; i += 5_000) {
    const pipeline = admin.pipeline();
    for (let j = 0; j < 5_000 && i + j < n; j++) pipeline.xadd(key, "*", ...fields);
    await pipeline.exec();
  }
  const enqueue = rate(n, performance.now() - started);
  const enqueueCpu = cpuPerJob(before, await spent(), n);
  await admin.xgroup("CREATE", key, "g", "0");
  before = await spent();
  started = performance.now();
  for (let done = 0; done < n;) {
    const reply = await admin.xreadgroup("GROUP", "g", "c", "COUNT", 200, "STREAMS", key, ">") as
      | [string, [string, string[]][]][]
      | null;
    const ids = reply?.[0]?.[1].map(([id]) => id) ?? [];
    if (ids.length > 0) await admin.xack(key, "g", ...ids);
    done += ids.length;
  }
  const process = rate(n, performance.now() - started);
  const processCpu = cpuPerJob(before, await spent(), n);
  await admin.del(key);
  return { enqueue, process, cpuUs: { enqueue: enqueueCpu, process: processCpu } };
}

const noop = task("noop", () => {});
/** The same no-op under a rate limit it never reaches: starts ask Redis (TAKE), or use starts
 * granted ahead. */
const limitedNoop = task("noop", () => {}, { rateLimit: { limit: 1_000_000, interval: 1_000 } });

/** A quiet worker on queue `name` that keeps no job records, or keeps them for the default
 * 24 h if `keepRecords`; with `priorities`, of a queue with that list. */
function benchWorker(
  name: string,
  tasks: AnyTask[],
  concurrency: number,
  keepRecords = false,
  priorities?: readonly string[],
  grouped = false,
  metrics = false,
  events = true,
): Worker {
  return new Worker(name, tasks, {
    redis: url,
    concurrency,
    ...(events ? {} : { events: false }),
    ...(keepRecords ? {} : { keepResult: 0 }),
    ...(priorities === undefined ? {} : { priorities }),
    ...(grouped ? { groups: { concurrency: GROUP_CONCURRENCY } } : {}),
    // Counting on, and the endpoint listening (on any free port), unscraped.
    ...(metrics ? { metrics: { port: 0 } } : {}),
    handleSignals: false,
    logger: quiet,
  });
}

async function sluiceEnqueue(n = N, events = true) {
  const name = fresh();
  await using queue = new Queue(name, { redis: url, ...(events ? {} : { events: false }) });
  const before = await spent();
  const started = performance.now();
  for (let i = 0; i < n; i += 10_000) {
    await queue.enqueueMany(
      noop,
      Array.from({ length: Math.min(10_000, n - i) }, () => ({ data: null })),
    );
  }
  const result = rate(n, performance.now() - started);
  const cpuUs = cpuPerJob(before, await spent(), n);
  await dropQueue(queue);
  return { rate: result, cpuUs };
}

/** Deletes every key of a bench queue, so the memory row's "before" counts none of them. */
async function dropQueue(queue: Queue, priorities: readonly string[] = []) {
  const { stream, dead, workers, delayed, payloads, jobPrefix, events } = queue.keys;
  const lanes = priorities.slice(1).map((name) => queue.keys.lane(name));
  const limits = [
    queue.keys.rate("t:noop"),
    queue.keys.booked("t:noop"),
    queue.keys.tally("t:noop"),
  ];
  await admin.unlink(stream, dead, workers, delayed, payloads, events, queue.keys.priorities);
  if (lanes.length > 0) await admin.unlink(...lanes);
  await admin.unlink(...limits);
  await deleteRecords(jobPrefix);
}

async function deleteRecords(prefix: string) {
  let cursor = "0";
  do {
    const [next, keys] = await admin.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 10_000);
    if (keys.length > 0) await admin.unlink(...keys);
    cursor = next;
  } while (cursor !== "0");
}

/**
 * Processes `n` no-op jobs at `concurrency`; with `keepRecords`, at the default keepResult; with
 * `priorities`, on a queue of that list, an equal share of the jobs in each priority.
 */
async function sluiceProcess(
  concurrency: number,
  n: number,
  keepRecords = false,
  priorities?: readonly string[],
  work: AnyTask = noop,
  groups = 0,
  metrics = false,
  events = true,
) {
  const name = fresh();
  await using queue = new Queue(name, {
    redis: url,
    ...(priorities ? { priorities } : {}),
    ...(events ? {} : { events: false }),
  });
  // Grouped: jobs spread round robin over `groups` groups, with the Worker's groups option
  // (concurrency GROUP_CONCURRENCY) stored before the enqueue, as a running worker would have:
  // all but each group's first jobs wait in their group's line.
  if (groups > 0) {
    await storeGroupOptions(scripted, queue.keys, { concurrency: GROUP_CONCURRENCY });
  }
  // Jobs of one priority at a time: a call of mixed priorities is cut at every change.
  const shares = priorities ?? [undefined];
  for (const [k, priority] of shares.entries()) {
    const share = Math.floor(n / shares.length) + (k < n % shares.length ? 1 : 0);
    for (let i = 0; i < share; i += 10_000) {
      await queue.enqueueMany(
        noop,
        Array.from(
          { length: Math.min(10_000, share - i) },
          (_, j) =>
            groups > 0
              ? { data: null, group: `g${(i + j) % groups}` }
              : priority === undefined
              ? { data: null }
              : { data: null, priority },
        ),
      );
    }
  }
  const worker = benchWorker(
    name,
    [work],
    concurrency,
    keepRecords,
    priorities,
    groups > 0,
    metrics,
    events,
  );
  let done = 0;
  const all = Promise.withResolvers<void>();
  worker.addEventListener("completed", () => ++done === n && all.resolve());
  const before = await spent();
  const started = performance.now();
  const run = worker.run();
  await all.promise;
  const result = rate(n, performance.now() - started);
  await worker.stop();
  await run;
  const after = await spent();
  await dropQueue(queue, priorities);
  if (groups > 0) {
    const { groups: settings, groupJobs, groupLines, groupSlots } = queue.keys;
    await admin.unlink(settings, groupJobs, groupLines, groupSlots);
  }
  return { rate: result, cpuUs: cpuPerJob(before, after, n), calls: callsPerJob(before, after, n) };
}

function percentiles(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
  const round = (x: number) => Math.round(x * 100) / 100;
  return { p50: round(at(0.5)), p95: round(at(0.95)), p99: round(at(0.99)), n: sorted.length };
}

/** Enqueue-to-start latency, in ms, measured with one clock in one process. */
async function pickup(kind: "idle" | "load") {
  const name = fresh();
  const samples: number[] = [];
  const stamp = task("stamp", (sent: number) => void samples.push(performance.now() - sent));
  await using queue = new Queue(name, { redis: url });
  const worker = benchWorker(name, [stamp], 32);
  const run = worker.run();
  if (kind === "idle") {
    for (let i = 0; i < 200; i++) {
      const before = samples.length;
      await queue.enqueue(stamp, performance.now());
      while (samples.length === before) await new Promise((r) => setTimeout(r, 0));
    }
  } else {
    // A fixed offered load of 2,000 jobs/s: 2 jobs every millisecond tick of the schedule.
    const total = 2_000 * LOAD_SECONDS;
    const started = performance.now();
    for (let sent = 0; sent < total;) {
      const due = Math.floor((performance.now() - started) * 2);
      const batch = Math.min(due, total) - sent;
      if (batch > 0) {
        const now = performance.now();
        await queue.enqueueMany(stamp, Array.from({ length: batch }, () => ({ data: now })));
        sent += batch;
      } else {
        await new Promise((r) => setTimeout(r, 1));
      }
    }
    while (samples.length < total) await new Promise((r) => setTimeout(r, 5));
  }
  await worker.stop();
  await run;
  return percentiles(samples);
}

/** Start minus due time for delayed jobs spread over a few seconds, in ms. */
async function lateness() {
  const name = fresh();
  const samples: number[] = [];
  const due = task("due", (at: number) => void samples.push(Date.now() - at));
  await using queue = new Queue(name, { redis: url });
  const worker = benchWorker(name, [due], 64);
  const run = worker.run();
  const base = Date.now() + 200;
  const items = Array.from({ length: LATE_JOBS }, (_, i) => {
    const at = base + Math.floor((i / LATE_JOBS) * LATE_SPREAD_MS);
    return { data: at, at };
  });
  await queue.enqueueMany(due, items);
  while (samples.length < LATE_JOBS) await new Promise((r) => setTimeout(r, 20));
  await worker.stop();
  await run;
  return percentiles(samples);
}

/**
 * Redis used_memory once Redis has tidied up: emptied hash tables keep their bucket arrays until
 * its own cron shrinks them (about 0.26 MiB after 20k job records, within 200 ms), so it is read
 * until it has stopped falling for three reads 100 ms apart (3 s at most).
 */
async function settledMemory(): Promise<number> {
  const used = async () => Number((await admin.info("memory")).match(/used_memory:(\d+)/)![1]);
  await admin.call("MEMORY", "PURGE").catch(() => {});
  let low = await used();
  for (let still = 0, reads = 0; still < 3 && reads < 30; reads++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = await used();
    if (now < low) [low, still] = [now, 0];
    else still++;
  }
  return low;
}

/**
 * One reading of a memory worker's `Deno.memoryUsage()`, after `done` jobs; with `rest`, taken
 * that many seconds after the last job, idle.
 */
interface MemoryReading {
  done: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  rest?: number;
}

/**
 * A worker's memory as a user would see it: a worker in its own process (bench/_memory_worker.ts,
 * concurrency 32, default options, so records are kept) runs MEMORY_JOBS no-op jobs that this
 * process enqueues, 20k at a time and at most two chunks ahead. Kept: its memory once idle
 * (after its first job) and every 200k jobs, and at rest after the last (see the worker's doc).
 * With `floor`, the process runs a bare XREADGROUP + XACK loop on the same jobs instead: what any
 * Deno + ioredis consumer holds.
 */
async function workerMemory(
  floor = false,
): Promise<{ readings: MemoryReading[]; rest: MemoryReading }> {
  const name = fresh();
  await using queue = new Queue(name, { redis: url });
  const chunk = 20_000;
  const args = [url, name, String(MEMORY_JOBS), String(chunk)];
  if (floor) args.push("floor", queue.keys.stream);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./_memory_worker.ts", import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const readings: MemoryReading[] = [];
  let moved = Promise.withResolvers<void>(), ended = false;
  const lines = (async () => {
    let text = "";
    for await (const piece of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += piece;
      const complete = text.split("\n");
      text = complete.pop()!;
      for (const line of complete) readings.push(JSON.parse(line));
      moved.resolve();
      moved = Promise.withResolvers();
    }
    ended = true;
    moved.resolve();
  })();
  const next = async () => {
    if (ended) throw new Error("bench: the memory worker ended early");
    await moved.promise;
  };
  const enqueue = (n: number) =>
    queue.enqueueMany(noop, Array.from({ length: n }, () => ({ data: null })));
  const done = () => readings.at(-1)?.done ?? 0;
  await enqueue(1);
  while (done() < 1) await next();
  // Fed a chunk at a time, at most two chunks ahead of what the worker has done.
  for (let sent = 1; sent < MEMORY_JOBS;) {
    while (sent - done() > chunk) await next();
    const n = Math.min(chunk, MEMORY_JOBS - sent);
    await enqueue(n);
    sent += n;
  }
  const status = await child.status;
  await lines;
  if (!status.success) throw new Error("bench: the memory worker failed");
  await dropQueue(queue);
  const rest = readings.find((r) => r.rest !== undefined);
  if (rest === undefined) throw new Error("bench: the memory worker gave no reading at rest");
  return {
    readings: readings.filter((r) =>
      r.rest === undefined && (r.done === 1 || r.done % 200_000 === 0 || r.done === MEMORY_JOBS)
    ),
    rest,
  };
}

async function memory() {
  const redisBefore = await settledMemory();
  const { readings: worker, rest: workerRest } = await workerMemory();
  // Every key of the queue is deleted, the job records kept by default too.
  const redisAfter = await settledMemory();
  const { readings: floor, rest: floorRest } = await workerMemory(true);
  return { jobs: MEMORY_JOBS, worker, floor, workerRest, floorRest, redisBefore, redisAfter };
}

type Cpu = { worker: number; redis: number };
type Calls = ReturnType<typeof callsPerJob>;

/** The processing rows, in the order they run (BullMQ's peer runs the same ones). */
const ROWS = [
  { id: "1", concurrency: 1, keepRecords: false },
  { id: "32", concurrency: 32, keepRecords: false },
  { id: "256", concurrency: 256, keepRecords: false },
  { id: "32-defaults", concurrency: 32, keepRecords: true },
];
/** Priorities' row: the c=32 row on a queue of 3 priorities, run right after it (sluice only). */
const PRIORITIES = ["bulk", "normal", "urgent"];
const PRIORITY_ROW = "32-priorities";
/** The c=32 row for a task with a rate limit it never reaches, run right after it. */
const LIMITED_ROW = "32-rate-limited";
/** The c=32 row with every job in one of GROUP_COUNT groups of concurrency GROUP_CONCURRENCY. */
const GROUPED_ROW = "32-grouped";
/** The c=32 row with the Worker's metrics on. */
const METRICS_ROW = "32-metrics";
/** The c=32 rows (no records, and records at defaults) with events off on both sides. */
const EVENTS_OFF_ROW = "32-events-off";
const DEFAULTS_EVENTS_OFF_ROW = "32-defaults-events-off";
const GROUP_COUNT = 100, GROUP_CONCURRENCY = 4;
const jobsAt = (concurrency: number) => concurrency === 1 ? Math.max(1_000, Math.floor(N / 10)) : N;

async function bullmq(): Promise<
  | {
    version: string;
    warmUp: number;
    enqueue: number;
    process: Record<string, number>;
    cpuUs: { enqueue: Cpu; process: Record<string, Cpu> };
    redisCalls: Record<string, Calls>;
  }
  | undefined
> {
  if (values["no-peer"]) return undefined;
  const dir = new URL("./peers/", import.meta.url).pathname;
  try {
    await Deno.stat(`${dir}node_modules/bullmq/package.json`);
  } catch {
    log("bench: installing BullMQ into bench/peers (npm install)");
    const install = await new Deno.Command("npm", {
      args: ["install", "--no-fund", "--no-audit", "--loglevel=error"],
      cwd: dir,
      stdout: "null",
      stderr: "inherit",
    }).output();
    if (!install.success) throw new Error("bench: npm install in bench/peers failed");
  }
  const out = await new Deno.Command("node", {
    args: [`${dir}bullmq.mjs`, url, String(N), ROWS.map((r) => r.id).join(","), String(WARM_UP)],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error("bench: the BullMQ peer failed");
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
}

log(`bench: ${quick ? "quick" : "full"} run, ${N} jobs per throughput test, Redis ${url}`);
/** CPU time the hypervisor gave to others (steal), and all CPU time, from /proc/stat. */
async function cpuTimes(): Promise<{ steal: number; total: number } | undefined> {
  try {
    const cpu = (await Deno.readTextFile("/proc/stat")).split("\n")[0]!.split(/\s+/).slice(1);
    const ticks = cpu.map(Number);
    return { steal: ticks[7] ?? 0, total: ticks.reduce((a, b) => a + b, 0) };
  } catch {
    return undefined;
  }
}
const cpuStart = await cpuTimes();

// Untimed, and in this process, as the BullMQ peer does in its own before its timed rounds.
log(`bench: untimed warm-up of ${WARM_UP} jobs (floor, sluice enqueue, sluice at concurrency 32)`);
await floor(WARM_UP);
await sluiceEnqueue(WARM_UP);
await sluiceProcess(32, WARM_UP);

log("bench: floor");
const floorFirst = await floor();
log("bench: sluice enqueue");
const enqueueRun = await sluiceEnqueue();
const enqueue = enqueueRun.rate;
const processing: Record<string, number> = {};
/** Each compared row's rate in every round, in order. */
const processRounds: Record<string, number[]> = {};
const processCpu: Record<string, Cpu> = {};
const calls: Record<string, Calls> = {};
// The c=32 rows that are compared with each other (the plain row against priorities, a rate
// limit, groups, metrics, events off; defaults against defaults without events) run in turns,
// ROUNDS times, each round starting one row later, and each row's median run is the one
// reported: on these machines, back-to-back single runs of the same code differed by a third.
const ROUNDS = quick ? 1 : 3;
type Run = Awaited<ReturnType<typeof sluiceProcess>>;
const variants: Record<string, { note: string; run: () => Promise<Run> }[]> = {
  "32": [
    { note: "concurrency 32", run: () => sluiceProcess(32, jobsAt(32)) },
    {
      note: `concurrency 32, ${PRIORITIES.length} priorities`,
      run: () => sluiceProcess(32, jobsAt(32), false, PRIORITIES),
    },
    {
      note: "concurrency 32, a rate-limited task never over its limit",
      run: () => sluiceProcess(32, jobsAt(32), false, undefined, limitedNoop),
    },
    {
      note: `concurrency 32, ${GROUP_COUNT} groups of concurrency 4`,
      run: () => sluiceProcess(32, jobsAt(32), false, undefined, noop, GROUP_COUNT),
    },
    {
      note: "concurrency 32, metrics on",
      run: () => sluiceProcess(32, jobsAt(32), false, undefined, noop, 0, true),
    },
    {
      note: "concurrency 32, events off",
      run: () => sluiceProcess(32, jobsAt(32), false, undefined, noop, 0, false, false),
    },
  ],
  "32-defaults": [
    {
      note: "concurrency 32, keepResult at its default (24 h of records)",
      run: () => sluiceProcess(32, jobsAt(32), true),
    },
    {
      note: "concurrency 32, keepResult's default, events off",
      run: () => sluiceProcess(32, jobsAt(32), true, undefined, noop, 0, false, false),
    },
  ],
};
const variantIds: Record<string, string[]> = {
  "32": ["32", PRIORITY_ROW, LIMITED_ROW, GROUPED_ROW, METRICS_ROW, EVENTS_OFF_ROW],
  "32-defaults": ["32-defaults", DEFAULTS_EVENTS_OFF_ROW],
};
for (const { id, concurrency, keepRecords } of ROWS) {
  const set = variants[id];
  if (set === undefined) {
    log(`bench: sluice processing at concurrency ${concurrency}`);
    const result = await sluiceProcess(concurrency, jobsAt(concurrency), keepRecords);
    processing[id] = result.rate;
    processCpu[id] = result.cpuUs;
    calls[id] = result.calls;
    continue;
  }
  const runs: Run[][] = set.map(() => []);
  for (let round = 1; round <= ROUNDS; round++) {
    // Each round starts one row later, so that no row always runs first or last.
    for (let j = 0; j < set.length; j++) {
      const i = (j + round - 1) % set.length;
      const { note, run } = set[i]!;
      log(`bench: sluice processing at ${note} (round ${round} of ${ROUNDS})`);
      runs[i]!.push(await run());
    }
  }
  for (const [i, rowId] of variantIds[id]!.entries()) {
    const sorted = [...runs[i]!].sort((a, b) => a.rate - b.rate);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    processing[rowId] = median.rate;
    processCpu[rowId] = median.cpuUs;
    calls[rowId] = median.calls;
    processRounds[rowId] = runs[i]!.map((r) => r.rate);
  }
}
log("bench: sluice enqueue, events off");
const enqueueSilent = await sluiceEnqueue(N, false);
// The floor again, right after the processing rows: machines here drift over minutes, and the
// higher of the two runs is the one sluice is compared with.
log("bench: floor again");
const floorAgain = await floor();
// CPU per job only gains from noise, so the lower of the two runs is the floor's figure.
const lower = (a: Cpu, b: Cpu) => ({
  worker: Math.min(a.worker, b.worker),
  redis: Math.min(a.redis, b.redis),
});
const floorResult = {
  enqueue: Math.max(floorFirst.enqueue, floorAgain.enqueue),
  process: Math.max(floorFirst.process, floorAgain.process),
  cpuUs: {
    enqueue: lower(floorFirst.cpuUs.enqueue, floorAgain.cpuUs.enqueue),
    process: lower(floorFirst.cpuUs.process, floorAgain.cpuUs.process),
  },
};
log("bench: pickup latency at idle");
const idle = await pickup("idle");
log(`bench: pickup latency at 2,000 jobs/s for ${LOAD_SECONDS} s`);
const loaded = await pickup("load");
log("bench: delayed-job lateness");
const late = await lateness();
log(`bench: memory of a worker process over ${MEMORY_JOBS} jobs, then of the floor loop`);
const mem = await memory();
log("bench: BullMQ on Node");
const peer = await bullmq();
const SCALE_JOBS = quick ? 20_000 : 100_000;
log(`bench: scale-out, 3 queues of ${SCALE_JOBS} jobs on a 3-master loopback Redis Cluster`);
const scale = await scaleOut(SCALE_JOBS);
log("bench: durable mode off and on, against a master and one replica on loopback");
const durable = await measureDurability(SCALE_JOBS);
await admin.quit();
await scripted.quit();
const cpuEnd = await cpuTimes();
const steal = cpuStart && cpuEnd && cpuEnd.total > cpuStart.total
  ? Math.round((cpuEnd.steal - cpuStart.steal) / (cpuEnd.total - cpuStart.total) * 100)
  : null;

const c32 = calls["32"]!;
const scriptCallsPer300kJobsAtC32 = Math.round((c32.scripts / c32.jobs) * 300_000);
const ratio = (a: number, b: number | undefined) => (b ? Math.round((a / b) * 100) / 100 : null);
const report = {
  mode: quick ? "quick" : "full",
  jobs: N,
  warmUpJobs: WARM_UP,
  redis: url,
  floor: floorResult,
  floorRuns: [floorFirst, floorAgain],
  cpuStealPercent: steal,
  sluice: {
    enqueue,
    process: processing,
    cpuUs: { enqueue: enqueueRun.cpuUs, process: processCpu },
    redisCalls: calls,
    scriptCallsPer300kJobsAtC32,
    /** The compared c=32 rows' rates in each round (the median is reported). */
    processRounds,
  },
  bullmq: peer ?? null,
  ratios: {
    enqueueVsFloor: ratio(enqueue, floorResult.enqueue),
    enqueueVsBullmq: ratio(enqueue, peer?.enqueue),
    processVsFloor: Object.fromEntries(
      Object.entries(processing).map(([c, r]) => [c, ratio(r, floorResult.process)]),
    ),
    processVsBullmq: Object.fromEntries(
      Object.entries(processing).map(([c, r]) => [c, ratio(r, peer?.process[c])]),
    ),
    /** The 3-priority row against the single-priority c=32 row (the issue's bar: >= 0.85). */
    prioritiesVsSingle: ratio(processing[PRIORITY_ROW]!, processing["32"]),
    /** The rate-limited row against the plain c=32 row (the issue's bar: >= 0.8). */
    rateLimitedVsPlain: ratio(processing[LIMITED_ROW]!, processing["32"]),
    /** The grouped row against the plain c=32 row (the issue's bar: >= 0.5). */
    groupedVsPlain: ratio(processing[GROUPED_ROW]!, processing["32"]),
    /** The row with metrics on against the plain c=32 row (the issue's bar: >= 0.95). */
    metricsVsPlain: ratio(processing[METRICS_ROW]!, processing["32"]),
    /** The c=32 row (events on, the default) against the same with events off. */
    eventsOnVsOff: ratio(processing["32"]!, processing[EVENTS_OFF_ROW]!),
    /** The same at keepResult's default. */
    eventsOnVsOffDefaults: ratio(processing["32-defaults"]!, processing[DEFAULTS_EVENTS_OFF_ROW]!),
    /** Enqueue with events on against enqueue with them off. */
    enqueueEventsOnVsOff: ratio(enqueue, enqueueSilent.rate),
  },
  scaleOut: { ...scale, ratio: ratio(scale.three.rate, scale.one.rate) },
  durable,
  pickupMs: { idle, at2000PerSecond: loaded },
  delayedLatenessMs: late,
  memory: {
    ...mem,
    /** RSS after all the jobs over RSS idle (the issue's bar: <= 2). */
    workerRssRatio: ratio(mem.worker.at(-1)!.rss, mem.worker[0]!.rss),
    floorRssRatio: ratio(mem.floor.at(-1)!.rss, mem.floor[0]!.rss),
    /** RSS at rest, idle after the last job (see bench/_memory_worker.ts), over RSS idle. */
    workerRestRssRatio: ratio(mem.workerRest.rss, mem.worker[0]!.rss),
    workerRestSeconds: mem.workerRest.rest,
    floorRestRssRatio: ratio(mem.floorRest.rss, mem.floor[0]!.rss),
    floorRestSeconds: mem.floorRest.rest,
    redisGrowth: ratio(mem.redisAfter - mem.redisBefore, mem.redisBefore),
  },
};

if (values.json) {
  console.log(JSON.stringify(report, null, 2));
} else {
  const k = (n: number) => `${(n / 1_000).toFixed(1)}k/s`;
  const pct = (x: number | null) => (x === null ? "n/a" : `${Math.round(x * 100)}%`);
  const times = (x: number | null) => (x === null ? "n/a" : `${x.toFixed(1)}x`);
  const fixed1 = (x: number | undefined) => (x === undefined ? "n/a" : x.toFixed(1));
  const label = (id: string) =>
    id === PRIORITY_ROW
      ? `process c=32, ${PRIORITIES.length} priorities`
      : id === LIMITED_ROW
      ? "process c=32, rate-limited task"
      : id === GROUPED_ROW
      ? `process c=32, ${GROUP_COUNT} groups of ${GROUP_CONCURRENCY}`
      : id === METRICS_ROW
      ? "process c=32, metrics on"
      : id === EVENTS_OFF_ROW
      ? "process c=32, events off"
      : id === DEFAULTS_EVENTS_OFF_ROW
      ? "process c=32 defaults, events off"
      : `process c=${id.replace("-", " ")}`;
  // The processing rows as printed: the priorities' and rate limit's rows after the c=32 one.
  const printed = ROWS.flatMap(({ id }) =>
    id === "32"
      ? [id, PRIORITY_ROW, LIMITED_ROW, GROUPED_ROW, METRICS_ROW, EVENTS_OFF_ROW]
      : id === "32-defaults"
      ? [id, DEFAULTS_EVENTS_OFF_ROW]
      : [id]
  );
  const table = (rows: string[][]) => {
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
    console.log(line(rows[0]!));
    console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
    for (const r of rows.slice(1)) console.log(line(r));
    console.log();
  };

  const rows: string[][] = [["", "floor", "sluice", "BullMQ", "sluice/floor", "sluice/BullMQ"]];
  rows.push([
    "enqueue",
    k(floorResult.enqueue),
    k(enqueue),
    peer ? k(peer.enqueue) : "n/a",
    pct(report.ratios.enqueueVsFloor),
    times(report.ratios.enqueueVsBullmq),
  ]);
  for (const id of printed) {
    rows.push([
      label(id),
      k(floorResult.process),
      k(processing[id]!),
      peer?.process[id] === undefined ? "n/a" : k(peer.process[id]),
      pct(report.ratios.processVsFloor[id]!),
      times(report.ratios.processVsBullmq[id]!),
    ]);
  }
  table(rows);
  console.log(
    `${label(PRIORITY_ROW)} / process c=32: ${pct(report.ratios.prioritiesVsSingle)} (same run)`,
  );
  console.log(
    `${label(LIMITED_ROW)} / process c=32: ${pct(report.ratios.rateLimitedVsPlain)} (same run)`,
  );
  console.log(
    `${label(GROUPED_ROW)} / process c=32: ${pct(report.ratios.groupedVsPlain)} (same run)`,
  );
  console.log(
    `${label(METRICS_ROW)} / process c=32: ${pct(report.ratios.metricsVsPlain)} (same run)`,
  );
  console.log(
    `events on (the default) / off: process c=32 ${
      pct(report.ratios.eventsOnVsOff)
    }, c=32 defaults ${pct(report.ratios.eventsOnVsOffDefaults)}, enqueue ${
      pct(report.ratios.enqueueEventsOnVsOff)
    } (${k(enqueueSilent.rate)} off; CPU µs/job off: enqueue worker ${
      fixed1(enqueueSilent.cpuUs.worker)
    }, Redis ${fixed1(enqueueSilent.cpuUs.redis)})`,
  );
  console.log();

  console.log("CPU per job (µs): worker | Redis");
  const cpuRows: string[][] = [[
    "",
    "floor worker",
    "floor Redis",
    "sluice worker",
    "sluice Redis",
    "BullMQ worker",
    "BullMQ Redis",
  ]];
  const cpuRow = (name: string, floorCpu: Cpu, sluiceCpu: Cpu, peerCpu: Cpu | undefined) =>
    cpuRows.push([
      name,
      fixed1(floorCpu.worker),
      fixed1(floorCpu.redis),
      fixed1(sluiceCpu.worker),
      fixed1(sluiceCpu.redis),
      fixed1(peerCpu?.worker),
      fixed1(peerCpu?.redis),
    ]);
  cpuRow("enqueue", floorResult.cpuUs.enqueue, enqueueRun.cpuUs, peer?.cpuUs.enqueue);
  for (const id of printed) {
    cpuRow(label(id), floorResult.cpuUs.process, processCpu[id]!, peer?.cpuUs.process[id]);
  }
  table(cpuRows);

  console.log("Redis calls per 1k jobs (INFO commandstats)");
  const callRows: string[][] = [[
    "",
    "sluice EVALSHA+EVAL",
    "sluice XREADGROUP",
    "BullMQ EVALSHA+EVAL",
  ]];
  for (const id of printed) {
    callRows.push([
      label(id),
      fixed1(calls[id]!.scriptsPer1k),
      fixed1(calls[id]!.xreadgroupPer1k),
      fixed1(peer?.redisCalls[id]?.scriptsPer1k),
    ]);
  }
  table(callRows);
  console.log(
    `sluice script calls at c=32:  ${scriptCallsPer300kJobsAtC32} EVALSHA+EVAL per 300k jobs (${c32.scripts} over ${c32.jobs} jobs)`,
  );
  console.log();

  console.log(
    `Redis Cluster scale-out: 3 queues x ${SCALE_JOBS} no-op jobs, one worker process each (c=32, keepResult 0)`,
  );
  table([
    ["", "jobs/s", "Redis CPU µs/job (all masters)", "worker CPU µs/job"],
    ...[scale.one, scale.three].map((r) => [
      `${r.masters === 1 ? "all on 1 master" : "one per master (3)"}`,
      k(r.rate),
      fixed1(r.redisCpuUsPerJob),
      fixed1(r.workerCpuUsPerJob),
    ]),
  ]);
  console.log(`3 masters / 1 master: ${times(report.scaleOut.ratio)}`);
  console.log();

  console.log(
    `Durable mode: { replicas: 1, timeout: 1000 } against a master and one replica on loopback (medians of 3 rounds, ${SCALE_JOBS} jobs)`,
  );
  table([
    ["", "durability off", "durability on", "on/off"],
    [
      "enqueue(), one at a time",
      `${durable.off.single.toFixed(0)} µs`,
      `${durable.on.single.toFixed(0)} µs`,
      times(ratio(durable.on.single, durable.off.single)),
    ],
    [
      "enqueueMany",
      k(durable.off.enqueued),
      k(durable.on.enqueued),
      pct(ratio(durable.on.enqueued, durable.off.enqueued)),
    ],
    [
      "process c=32",
      k(durable.off.processed),
      k(durable.on.processed),
      pct(ratio(durable.on.processed, durable.off.processed)),
    ],
  ]);

  const ms = (p: { p50: number; p95: number; p99: number }) =>
    `p50 ${p.p50} ms, p95 ${p.p95} ms, p99 ${p.p99} ms`;
  console.log(`pickup at idle:          ${ms(idle)}`);
  console.log(`pickup at 2,000 jobs/s:  ${ms(loaded)}`);
  console.log(
    `delayed-job lateness:    ${ms(late)} (${LATE_JOBS} jobs over ${LATE_SPREAD_MS / 1000} s)`,
  );
  const mb = (b: number) => `${(b / 1_048_576).toFixed(1)} MiB`;
  const at = (r: MemoryReading) => r.done === 1 ? "idle" : `${r.done / 1_000}k`;
  const rss = (readings: MemoryReading[]) => readings.map((r) => `${mb(r.rss)} ${at(r)}`);
  console.log(
    `worker RSS:              ${rss(mem.worker).join(", ")} (own process, c=32, defaults: ${
      times(report.memory.workerRssRatio)
    } idle)`,
  );
  const last = mem.worker.at(-1)!;
  console.log(
    `worker heap at ${at(last)}:       ${mb(last.heapUsed)} used of ${mb(last.heapTotal)}, ${
      mb(last.external)
    } external`,
  );
  console.log(
    `floor loop RSS:          ${rss(mem.floor).join(", ")} (bare XREADGROUP + XACK: ${
      times(report.memory.floorRssRatio)
    } idle)`,
  );
  const rested = (r: MemoryReading) => `${mb(r.rss)} ${r.rest} s after the last job`;
  console.log(
    `RSS at rest:             worker ${rested(mem.workerRest)} (${
      times(report.memory.workerRestRssRatio)
    } idle); floor loop ${rested(mem.floorRest)} (${
      times(report.memory.floorRestRssRatio)
    }); idle, read every second until under 1.5x idle or 60 s`,
  );
  console.log(
    `Redis used_memory:       ${mb(mem.redisBefore)} before, ${
      mb(mem.redisAfter)
    } after the worker's queue is deleted (${pct(report.memory.redisGrowth)})`,
  );
  if (peer) console.log(`peer: BullMQ ${peer.version} on Node, same Redis, same run`);
  console.log(
    `warm-up:                 ${
      peer ? "floor, sluice and BullMQ" : "floor and sluice"
    } each ran an untimed ${WARM_UP} jobs (enqueue, then processing at c=32) first`,
  );
  console.log(
    `floor runs:              ${
      [floorFirst, floorAgain].map((f) => `${k(f.enqueue)} enqueue, ${k(f.process)} process`)
        .join("; then ")
    } (the higher is used; for CPU per job, the lower)`,
  );
  console.log(
    `records:                 "defaults" rows keep job records: sluice at keepResult's default (24 h), BullMQ with removeOnComplete { age: 86400 }; the other rows keep none`,
  );
  console.log(
    `compared c=32 rows:      run in turns, ${ROUNDS} round(s), the median reported; rounds: ${
      Object.entries(processRounds).map(([id, rates]) => `${label(id)} ${rates.map(k).join(" ")}`)
        .join("; ")
    }`,
  );
  if (steal !== null) console.log(`cpu steal during the run: ${steal}% (time the VM host took)`);
}

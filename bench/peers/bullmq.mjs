// deno-lint-ignore-file no-console
// BullMQ on Node, the peer in sluice's bench: the same work against the same Redis.
//   node bullmq.mjs <redis-url> <jobs> <row,...> [warm-up jobs]
// A row is a concurrency ("32": jobs removed on completion, removeOnComplete: true), or a
// concurrency then "-defaults" ("32-defaults": a day of results kept, removeOnComplete:
// { age: 86400 }, as sluice keeps records for keepResult's default of 24 h).
// Prints one JSON line: { version, warmUp, enqueue, process: { <row>: jobs/s },
//   cpuUs: { enqueue: { worker, redis }, process: { <row>: { worker, redis } } },
//   redisCalls: { <row>: { jobs, scripts, xreadgroup, scriptsPer1k, xreadgroupPer1k } } }.
// cpuUs is CPU per job in µs: this process's user + system time (process.cpuUsage()), and
// Redis's used_cpu_user + used_cpu_sys from INFO CPU, over the fill, or over the worker's run
// from its start until it has closed. redisCalls counts EVALSHA + EVAL and XREADGROUP over that
// run (INFO commandstats).
// The warm-up (untimed: a fill, then processing at concurrency 32) is the same size as the one
// bench.ts gives the floor and sluice, so no contender is timed with a cold JIT.
import { Queue, Worker } from "bullmq";
import IORedis from "ioredis";
import { readFileSync } from "node:fs";

const [url, jobsArg, rowsArg, warmUpArg] = process.argv.slice(2);
const jobs = Number(jobsArg);
// The same default as bench.ts, for runs by hand.
const warmUp = Number(warmUpArg ?? Math.max(1, Math.min(jobs, 100_000)));
const connect = () => new IORedis(url, { maxRetriesPerRequest: null });
const admin = connect();
const version = JSON.parse(
  readFileSync(new URL("./node_modules/bullmq/package.json", import.meta.url)),
).version;

/** CPU (µs) spent so far by this process and by Redis, and Redis's count of some commands. */
async function spent() {
  const cpu = await admin.info("cpu");
  const stats = await admin.info("commandstats");
  const field = (name) => Number(cpu.match(new RegExp(`^${name}:([\\d.]+)`, "m"))?.[1] ?? 0);
  const calls = (command) =>
    Number(stats.match(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, "m"))?.[1] ?? 0);
  const { user, system } = process.cpuUsage();
  return {
    worker: user + system,
    redis: Math.round((field("used_cpu_user") + field("used_cpu_sys")) * 1e6),
    scripts: calls("evalsha") + calls("eval"),
    xreadgroup: calls("xreadgroup"),
  };
}

const round2 = (x) => Math.round(x * 100) / 100;
const cpuPerJob = (from, to, n) => ({
  worker: round2((to.worker - from.worker) / n),
  redis: round2((to.redis - from.redis) / n),
});
const callsPerJob = (from, to, n) => ({
  jobs: n,
  scripts: to.scripts - from.scripts,
  xreadgroup: to.xreadgroup - from.xreadgroup,
  scriptsPer1k: round2(((to.scripts - from.scripts) / n) * 1_000),
  xreadgroupPer1k: round2(((to.xreadgroup - from.xreadgroup) / n) * 1_000),
});

async function fill(queue, n, keep) {
  const remove = keep ? { age: 86_400 } : true;
  const before = await spent();
  const started = performance.now();
  for (let i = 0; i < n; i += 1_000) {
    const batch = Array.from({ length: Math.min(1_000, n - i) }, () => ({
      name: "noop",
      data: null,
      opts: { removeOnComplete: remove, removeOnFail: remove },
    }));
    await queue.addBulk(batch);
  }
  const rate = n / ((performance.now() - started) / 1_000);
  return { rate, cpuUs: cpuPerJob(before, await spent(), n) };
}

/** Fills a fresh queue with `n` jobs, then processes them; returns both rates in jobs/s and
 * what each phase cost. With `keep`, a day of finished jobs is kept. */
async function round(name, n, concurrency, keep = false) {
  const queue = new Queue(name, { connection: connect() });
  const enqueue = await fill(queue, n, keep);
  let done = 0;
  let resolve;
  const promise = new Promise((r) => (resolve = r)); // Node 20 has no Promise.withResolvers
  const worker = new Worker(name, async () => {}, {
    connection: connect(),
    concurrency,
    autorun: false,
  });
  worker.on("completed", () => {
    if (++done === n) resolve();
  });
  const before = await spent();
  const started = performance.now();
  worker.run();
  await promise;
  const processed = n / ((performance.now() - started) / 1_000);
  await worker.close();
  const after = await spent();
  await queue.obliterate({ force: true });
  await queue.close();
  return {
    enqueue,
    process: processed,
    cpuUs: cpuPerJob(before, after, n),
    calls: callsPerJob(before, after, n),
  };
}

await round(`bench-${process.pid}-warm-up`, warmUp, 32);
const out = {
  version,
  warmUp,
  enqueue: 0,
  process: {},
  cpuUs: { enqueue: null, process: {} },
  redisCalls: {},
};
let rounds = 0;
for (const row of rowsArg.split(",")) {
  const [, conc, defaults] = row.match(/^(\d+)(-defaults)?$/) ?? [];
  if (conc === undefined) throw new Error(`bench peer: bad row ${JSON.stringify(row)}`);
  const concurrency = Number(conc);
  const n = concurrency === 1 ? Math.max(1_000, Math.floor(jobs / 10)) : jobs;
  const result = await round(`bench-${process.pid}-${rounds++}`, n, concurrency, !!defaults);
  if (out.enqueue === 0) {
    out.enqueue = result.enqueue.rate;
    out.cpuUs.enqueue = result.enqueue.cpuUs;
  }
  out.process[row] = result.process;
  out.cpuUs.process[row] = result.cpuUs;
  out.redisCalls[row] = result.calls;
}
console.log(JSON.stringify(out));
process.exit(0); // the client instances BullMQ was given stay open otherwise

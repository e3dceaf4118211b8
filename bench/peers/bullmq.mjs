// deno-lint-ignore-file no-console
// BullMQ on Node, the peer in sluice's bench: the same work against the same Redis.
//   node bullmq.mjs <redis-url> <jobs> <concurrency,...> [warm-up jobs]
// Prints one JSON line: { version, warmUp, enqueue, process: { <concurrency>: jobs/s } }.
// The warm-up (untimed: a fill, then processing at concurrency 32) is the same size as the one
// bench.ts gives the floor and sluice, so no contender is timed with a cold JIT.
import { Queue, Worker } from "bullmq";
import IORedis from "ioredis";
import { readFileSync } from "node:fs";

const [url, jobsArg, concArg, warmUpArg] = process.argv.slice(2);
const jobs = Number(jobsArg);
// The same default as bench.ts, for runs by hand.
const warmUp = Number(warmUpArg ?? Math.max(1, Math.min(jobs, 100_000)));
const connect = () => new IORedis(url, { maxRetriesPerRequest: null });
const version = JSON.parse(
  readFileSync(new URL("./node_modules/bullmq/package.json", import.meta.url)),
).version;

async function fill(queue, n) {
  const started = performance.now();
  for (let i = 0; i < n; i += 1_000) {
    const batch = Array.from({ length: Math.min(1_000, n - i) }, () => ({
      name: "noop",
      data: null,
      opts: { removeOnComplete: true, removeOnFail: true },
    }));
    await queue.addBulk(batch);
  }
  return n / ((performance.now() - started) / 1_000);
}

/** Fills a fresh queue with `n` jobs, then processes them; returns both rates in jobs/s. */
async function round(name, n, concurrency) {
  const queue = new Queue(name, { connection: connect() });
  const enqueue = await fill(queue, n);
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
  const started = performance.now();
  worker.run();
  await promise;
  const processed = n / ((performance.now() - started) / 1_000);
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  return { enqueue, process: processed };
}

await round(`bench-${process.pid}-warm-up`, warmUp, 32);
const out = { version, warmUp, enqueue: 0, process: {} };
let rounds = 0;
for (const concurrency of concArg.split(",").map(Number)) {
  const n = concurrency === 1 ? Math.max(1_000, Math.floor(jobs / 10)) : jobs;
  const rates = await round(`bench-${process.pid}-${rounds++}`, n, concurrency);
  if (out.enqueue === 0) out.enqueue = rates.enqueue;
  out.process[concurrency] = rates.process;
}
console.log(JSON.stringify(out));
process.exit(0); // the client instances BullMQ was given stay open otherwise

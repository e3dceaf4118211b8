// deno-lint-ignore-file no-console
// BullMQ on Node, the peer in sluice's bench: the same work against the same Redis.
//   node bullmq.mjs <redis-url> <jobs> <concurrency,...>
// Prints one JSON line: { version, enqueue, process: { <concurrency>: jobs/s } }.
import { Queue, Worker } from "bullmq";
import IORedis from "ioredis";
import { readFileSync } from "node:fs";

const [url, jobsArg, concArg] = process.argv.slice(2);
const jobs = Number(jobsArg);
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

const out = { version, enqueue: 0, process: {} };
let round = 0;
for (const concurrency of concArg.split(",").map(Number)) {
  const name = `bench-${process.pid}-${round++}`;
  const queue = new Queue(name, { connection: connect() });
  const n = concurrency === 1 ? Math.max(1_000, Math.floor(jobs / 10)) : jobs;
  const rate = await fill(queue, n);
  if (out.enqueue === 0) out.enqueue = rate;
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
  out.process[concurrency] = n / ((performance.now() - started) / 1_000);
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
}
console.log(JSON.stringify(out));
process.exit(0); // the client instances BullMQ was given stay open otherwise

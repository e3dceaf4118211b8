// deno-lint-ignore-file no-console
/**
 * Redis Cluster: a worker and a producer on a throwaway loopback cluster (3 masters, a replica
 * each); the master that holds the queue is killed mid-run, a replica takes over, and the work
 * goes on with no restart. `deno run -A examples/cluster.ts`
 */
import { Redis } from "ioredis";
import { Queue, task, Worker } from "../mod.ts";
import { delay } from "../src/async.ts";
import { startCluster } from "../src/testing.ts";

await using cluster = await startCluster({ masters: 3, replicasPerMaster: 1 });
const redis = { cluster: [...cluster.urls] };
const done = new Set<number>(); // a job that runs twice after the failover counts once
const pack = task("pack", async (order: { n: number }) => {
  await delay(2);
  done.add(order.n);
  return order.n;
});
const quiet = { warn() {}, error() {} };
await using queue = new Queue("orders", { redis, logger: quiet });
await using worker = new Worker("orders", [pack], {
  redis,
  concurrency: 8,
  handleSignals: false,
  logger: quiet,
});

// Which master holds the queue: every key of it carries the hash tag {orders}.
const slot = await slotOf(cluster.urls[0]!, "{orders}");
const owner = await ownerOf(cluster.urls[0]!, slot);
console.log(`queue orders lives on slot ${slot}, master 127.0.0.1:${owner}`);

const handles = await queue.enqueueMany(
  pack,
  Array.from({ length: 400 }, (_, n) => ({ data: { n } })),
);
// Replication is asynchronous: jobs a replica has not received yet when its master dies are
// gone (durable mode, `durability`, waits for a replica on each write instead). Here the kill
// waits until the replica holds every job enqueued; what the worker settles after that may be
// lost and run again (counted once).
await replicated(`redis://127.0.0.1:${owner}`);
const run = worker.run();
while (done.size < 100) await delay(10);
await cluster.killNode(cluster.nodes.findIndex((node) => node.port === owner));
console.log(`killed that master (kill -9) after ${done.size} jobs; a replica takes over`);
// Waiting on the worker's count, not on result(): a call made during the failover may fail
// (its node is gone) and would have to be made again.
while (done.size < handles.length) await delay(20);
// The cluster names the new master once the failover is through.
const alive = cluster.urls.find((_, i) => cluster.nodes[i]!.port !== owner)!;
let now = owner;
while (now === owner) {
  now = await ownerOf(alive, slot);
  if (now === owner) await delay(50);
}
console.log(`${done.size} of ${handles.length} jobs done, the queue now on 127.0.0.1:${now}`);
await worker.stop();
await run;

/** Waits until a replica of the master at `url` has every write the master has made so far. */
async function replicated(url: string): Promise<void> {
  const admin = new Redis(url);
  try {
    const info = async () => String(await admin.info("replication"));
    const target = Number(/master_repl_offset:(\d+)/.exec(await info())![1]);
    while (true) {
      const offsets = [...(await info()).matchAll(/slave\d+:.*offset=(\d+)/g)];
      if (offsets.some(([, offset]) => Number(offset) >= target)) return;
      await delay(10);
    }
  } finally {
    admin.disconnect();
  }
}

async function slotOf(url: string, key: string): Promise<number> {
  const admin = new Redis(url);
  try {
    return Number(await admin.call("CLUSTER", "KEYSLOT", key));
  } finally {
    admin.disconnect();
  }
}

/** The port of the master that serves `slot`, asked of the node at `url`. */
async function ownerOf(url: string, slot: number): Promise<number> {
  const admin = new Redis(url);
  try {
    const ranges = await admin.call("CLUSTER", "SLOTS") as [number, number, [string, number]][];
    return ranges.find(([from, to]) => from <= slot && slot <= to)![2][1];
  } finally {
    admin.disconnect();
  }
}

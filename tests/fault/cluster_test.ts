/**
 * Redis Cluster under a real failover: the master that owns the queue's slot is killed with
 * kill -9 while a producer enqueues and two worker processes run jobs. A replica takes over;
 * everyone follows with no restart. Counted in a ledger kept outside the cluster. Without
 * durable mode a failover may drop the last writes before it (replication is asynchronous):
 * those losses are counted and reported; in durable mode none may be lost.
 */
import assert from "node:assert/strict";
import { type Durability, Queue } from "../../mod.ts";
import { delay } from "../../src/async.ts";
import { startCluster } from "../../src/testing.ts";
import { inspect, waitForRedis, WorkerProcess } from "../_helpers.ts";
import { attempt, masterOf } from "../_cluster.ts";
import { deliveredTwiceAsNew, Ledger, work } from "./_ledger.ts";

const CONCURRENCY = 4;
const PREFETCH = 4;

async function failover(durability: Durability | undefined) {
  // In durable mode each master has 2 replicas, so one is left to wait for after a failover.
  await using cluster = await startCluster({
    masters: 3,
    replicasPerMaster: durability ? 2 : 1,
    nodeTimeout: 1_000,
  });
  await using ledger = await Ledger.start();
  const redis = { cluster: [...cluster.urls] };
  const options = {
    queue: "q",
    ledger: ledger.url,
    concurrency: CONCURRENCY,
    prefetch: PREFETCH,
    idle: 2_000,
    ...(durability ? { durable: `${durability.replicas}:${durability.timeout}` } : {}),
  };
  const workers = [0, 1].map(() => new WorkerProcess(JSON.stringify(redis), options));
  try {
    await Promise.all(workers.map((w) => w.waitFor((e) => e.ev === "ready", "ready")));
    await using queue = new Queue("q", {
      redis,
      ...(durability ? { durability } : {}),
      logger: { warn() {}, error() {} },
    });
    const owner = await masterOf(cluster.urls[0]!, "{q}");
    const survivor = cluster.nodes.find((n) => n.port !== owner.port)!;

    // A producer that keeps going through the failover: batches with ids of their own, each
    // sent again until it lands (a batch that landed unseen is deduplicated).
    let failedCalls = 0, failedOver = false;
    /** Jobs whose enqueue started before the failover was over: the only ones at risk. */
    const atRisk = new Set<string>();
    const producer = (async () => {
      for (let b = 0; b < 40; b++) {
        const items = work(50, 2, `b${b}-`);
        if (!failedOver) { for (const { id } of items) atRisk.add(id); }
        for (;;) {
          try {
            const handles = await queue.enqueueMany("work", items, {
              signal: AbortSignal.timeout(5_000),
            });
            ledger.add(handles.map((h) => h.id));
            break;
          } catch {
            failedCalls++;
            await delay(100);
          }
        }
        await delay(20);
      }
    })();
    await ledger.waitForCommits(300);
    // Waiters through the failover: a result() the kill made give up (ioredis stops retrying a
    // command well before a replica takes over) would reject with a connection error.
    const awaited = await queue.enqueueMany("work", work(20, 50, "r"));
    ledger.add(awaited.map((h) => h.id));
    // These jobs are not at risk: the replica has them before the kill. Replication keeps
    // order, so once it has a later write of the owner's (WAIT), it has them too.
    {
      await using direct = inspect(cluster.nodes.find((n) => n.port === owner.port)!.url);
      await direct.set("{q}:replicated", "1");
      assert.ok(await direct.wait(1, 10_000) >= 1, "a replica caught up before the kill");
    }
    const waiting = Promise.allSettled(
      awaited.map((h) => h.result({ signal: AbortSignal.timeout(30_000) })),
    );
    await cluster.killNode(cluster.nodes.findIndex((n) => n.port === owner.port));
    const atKill = await ledger.committed();
    const seen = workers.map((w) => w.events.length);
    await waitForRedis(
      async () => {
        const now = await attempt(() => masterOf(survivor.url, "{q}"));
        return now !== false && now.port !== owner.port;
      },
      "a replica to take over the queue's slot",
      20_000,
    );
    failedOver = true;
    await producer;

    // Done when nothing is left anywhere: a job is acked only after its handler committed, so
    // with nothing active every commit is in the ledger.
    await waitForRedis(
      async () => {
        const stats = await queue.stats().catch(() => undefined);
        return stats !== undefined && stats.waiting + stats.active + stats.delayed === 0;
      },
      "the queue to drain after the failover",
      60_000,
    );

    for (const o of await waiting) {
      if (o.status === "fulfilled") continue;
      // Only a job lost to asynchronous replication may leave its waiter without a result.
      assert.ok(o.reason instanceof Error, String(o.reason));
      assert.ok(!durability, `result() in durable mode: ${o.reason.message}`);
      assert.doesNotMatch(o.reason.message, /Connection is closed|redirections|MOVED|CLUSTERDOWN/);
    }

    assert.ok((await ledger.committed()) > atKill, "work went on after the failover");
    workers.forEach((w, i) => {
      assert.equal(w.count("exited"), 0, `worker ${i} gave up`);
      const after = w.events.slice(seen[i]).filter((e) => e.ev === "completed").length;
      assert.ok(after > 0, `worker ${i} completed nothing after the failover\n${w.log()}`);
    });
    // A job may run twice if it was held at the kill, or (without durable mode) if its ack
    // died with the master; a durable worker holds up to twice its window while settles wait.
    const held = workers.length * (CONCURRENCY + PREFETCH) * (durability ? 2 : 1);
    const tally = await ledger.verdict(
      `Redis Cluster failover${durability ? ", durable" : ""}`,
      "kill -9 the queue's master mid-run; its replica takes over",
      held + (durability ? 0 : 50),
      {
        explains: deliveredTwiceAsNew,
        ...(durability ? {} : { mayLose: "asynchronous replication", atRisk }),
      },
    );
    // deno-lint-ignore no-console
    console.log(
      `cluster failover${
        durability ? " (durable)" : ""
      }: ${tally.jobs} jobs, lost ${tally.lost.length}, duplicated ${tally.duplicated}, producer calls sent again ${failedCalls}`,
    );
  } finally {
    await Promise.all(workers.map((w) => w[Symbol.asyncDispose]()));
  }
}

Deno.test("Redis Cluster: the queue's master killed mid-run; its replica takes over and every process carries on", async () => {
  await failover(undefined);
});

Deno.test("Redis Cluster, durable mode: the queue's master killed mid-run loses nothing", async () => {
  await failover({ replicas: 1, timeout: 500 });
});

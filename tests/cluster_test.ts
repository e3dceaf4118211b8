/**
 * Redis Cluster, on a real loopback cluster: every feature on one queue, where its reads and
 * sharded subscriptions live, six queues on several masters at once, and a worker killed with
 * kill -9. (A master killed mid-run is in tests/fault/cluster_test.ts.)
 */
import assert from "node:assert/strict";
import { CancelledError, type JobHandle, Queue, task, Worker } from "../mod.ts";
import { startCluster } from "../src/testing.ts";
import { keySlot } from "../src/redis/cluster.ts";
import { inspect, waitForRedis, WorkerProcess } from "./_helpers.ts";
import { clusterNodes, masterOf } from "./_cluster.ts";

Deno.test("Redis Cluster: results, delays, retries, dead letters and cancels, on the queue's master with sharded pub/sub", async () => {
  await using cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
  // One node to start from: ioredis finds the others.
  const redis = { cluster: [cluster.urls[0]!] };
  const started = Promise.withResolvers<void>();
  const add = task("add", (d: { a: number; b: number }) => d.a + d.b);
  const boom = task("boom", () => {
    throw new Error("no");
  }, { retry: { attempts: 2, backoff: { type: "fixed", delay: 20 } } });
  const hold = task("hold", (_: null, ctx) => {
    started.resolve();
    return new Promise<never>((_, reject) => {
      ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
    });
  });
  const worker = new Worker("cq", [add, boom, hold], { redis, concurrency: 4 });
  const running = worker.run();
  try {
    await using queue = new Queue("cq", { redis });
    assert.equal(await (await queue.enqueue(add, { a: 1, b: 2 })).result(soon()), 3);
    const delayed = await queue.enqueue(add, { a: 2, b: 2 }, { delay: 200 });
    assert.equal(await delayed.result(soon()), 4);
    const many = await queue.enqueueMany(
      add,
      Array.from({ length: 500 }, (_, i) => ({ data: { a: i, b: 1 } })),
    );
    assert.deepEqual(
      await Promise.all(many.map((h) => h.result(soon()))),
      Array.from({ length: 500 }, (_, i) => i + 1),
    );

    const failing = await queue.enqueue(boom, null);
    await assert.rejects(failing.result(soon()), /dead letters \(failed\)/);
    assert.equal(await queue.dead.count(), 1);
    const [letter] = await queue.dead.list();
    assert.equal(letter?.id, failing.id);
    assert.equal(letter?.attempt, 2);

    const later = await queue.enqueue(add, { a: 0, b: 0 }, { delay: 60_000 });
    assert.deepEqual(await queue.job(later.id).cancel(), { cancelled: true, state: "delayed" });
    const held = await queue.enqueue(hold, null);
    await started.promise;
    // The cancel reaches the worker over sharded pub/sub.
    assert.equal((await queue.job(held.id).cancel()).cancelled, true);
    await assert.rejects(held.result(soon()), CancelledError);
    assert.equal((await queue.job(held.id).info())?.state, "cancelled");

    // The slot sluice computes for a key is the one Redis does, hash tags and all.
    {
      await using admin = inspect(cluster.urls[0]!);
      for (
        const key of ["sluice:{cq}:stream", "{}", "{a", "a{}b{c}", "x{y}z", "🙂{é}", "123456789"]
      ) {
        assert.equal(keySlot(key), Number(await admin.call("CLUSTER", "KEYSLOT", key)), key);
      }
    }
    // The queue's blocking read and its subscriptions are on its master, and nowhere else;
    // nothing uses classic (cluster-wide) pub/sub.
    const owner = await masterOf(cluster.urls[0]!, "sluice:{cq}:stream");
    for (const node of cluster.nodes) {
      await using admin = inspect(node.url);
      const shard = (await admin.call("PUBSUB", "SHARDCHANNELS")) as string[];
      const classic = (await admin.call("PUBSUB", "CHANNELS")) as string[];
      const clients = String(await admin.client("LIST"));
      assert.deepEqual(classic, [], `classic channels on ${node.port}`);
      if (node.port === owner.port) {
        assert.deepEqual(shard.sort(), [
          "sluice:{cq}:cancel",
          "sluice:{cq}:held",
          "sluice:{cq}:pause",
          "sluice:{cq}:wake",
        ]);
        assert.match(clients, /name=sluice:blocking:/);
      } else {
        assert.deepEqual(shard, [], `shard channels on ${node.port}`);
        assert.doesNotMatch(clients, /name=sluice:blocking:/);
      }
    }
  } finally {
    await worker.stop();
    await running;
  }
});

Deno.test("Redis Cluster: six queues on several masters, one worker process each, all at once", async () => {
  await using cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
  const redis = { cluster: [...cluster.urls] };
  const names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
  const owners = new Set<number>();
  for (const name of names) owners.add((await masterOf(cluster.urls[0]!, `{${name}}`)).port);
  assert.ok(owners.size >= 2, `the queues' slots are on ${owners.size} master(s)`);

  const workers = names.map((queue) =>
    new WorkerProcess(JSON.stringify(redis), { queue, concurrency: 8, prefetch: 8 })
  );
  try {
    await Promise.all(workers.map((w) => w.waitFor((e) => e.ev === "ready", "ready")));
    const queues = names.map((name) => new Queue(name, { redis }));
    try {
      const handles: JobHandle<unknown>[][] = await Promise.all(
        queues.map((q) =>
          q.enqueueMany("sleep", Array.from({ length: 200 }, () => ({ data: { ms: 1 } })))
        ),
      );
      const results = await Promise.all(handles.flat().map((h) => h.result(soon())));
      assert.equal(results.length, 1_200);
      assert.ok(results.every((r) => r === 1));
      // Each job ran in the worker of its own queue, once.
      for (const [i, worker] of workers.entries()) {
        const mine = new Set(handles[i]!.map((h) => h.id));
        const completed = worker.events.filter((e) => e.ev === "completed");
        assert.equal(completed.length, 200, `worker of ${names[i]}`);
        assert.ok(completed.every((e) => mine.has(String(e.id))));
      }
    } finally {
      await Promise.all(queues.map((q) => q.close()));
    }
  } finally {
    await Promise.all(workers.map((w) => w[Symbol.asyncDispose]()));
  }
});

Deno.test("Redis Cluster: a worker killed with kill -9 leaves its jobs to a peer, which reclaims them", async () => {
  await using cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
  const redis = JSON.stringify({ cluster: [...cluster.urls] });
  const options = { queue: "kq", concurrency: 4, prefetch: 0, idle: 1_000 };
  const doomed = new WorkerProcess(redis, options);
  let survivor: WorkerProcess | undefined;
  try {
    await doomed.waitFor((e) => e.ev === "ready", "ready");
    await using queue = new Queue("kq", { redis: JSON.parse(redis) });
    const handles = await queue.enqueueMany(
      "sleep",
      Array.from({ length: 40 }, () => ({ data: { ms: 200 } })),
    );
    await doomed.waitFor((e) => e.ev === "started", "a job started");
    doomed.child.kill("SIGKILL");
    await doomed.status;
    // Started only now, so what the dead worker held can reach it only by being reclaimed.
    survivor = new WorkerProcess(redis, options);
    const results = await Promise.all(handles.map((h) => h.result(soon())));
    assert.deepEqual(results, handles.map(() => 200));
    assert.ok(survivor.events.some((e) => e.ev === "started" && Number(e.deliveries) > 1));
  } finally {
    await Promise.all([doomed, survivor].map((w) => w?.[Symbol.asyncDispose]()));
  }
});

Deno.test("Redis Cluster: a queue's slot migrated to another master while a worker runs; its read and subscriptions follow", async () => {
  await using cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
  const redis = { cluster: [...cluster.urls] };
  const add = task("add", (d: { a: number; b: number }) => d.a + d.b);
  const started = Promise.withResolvers<void>();
  const hold = task("hold", (_: null, ctx) => {
    started.resolve();
    return new Promise<never>((_, reject) => {
      ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
    });
  });
  const worker = new Worker("mq", [add, hold], {
    redis,
    concurrency: 4,
    handleSignals: false,
    logger: { warn() {}, error() {} },
  });
  const running = worker.run();
  try {
    await using queue = new Queue("mq", { redis });
    const before = await queue.enqueueMany(add, [{ data: { a: 1, b: 1 } }]);
    assert.deepEqual(await Promise.all(before.map((h) => h.result(soon()))), [2]);

    // Move the slot by hand, as a resharding does: IMPORTING, MIGRATING, MIGRATE every key,
    // then the new owner on every master.
    const source = await masterOf(cluster.urls[0]!, "{mq}");
    const masters = clusterNodes(await adminCall(cluster.urls[0]!, "CLUSTER", "NODES"))
      .filter((n) => n.flags.includes("master"));
    const target = masters.find((n) => n.id !== source.id)!;
    const slot = keySlot("{mq}");
    const url = (port: number) => `redis://127.0.0.1:${port}`;
    await adminCall(url(target.port), "CLUSTER", "SETSLOT", slot, "IMPORTING", source.id);
    await adminCall(url(source.port), "CLUSTER", "SETSLOT", slot, "MIGRATING", target.id);
    for (;;) {
      const keys = await adminCall(
        url(source.port),
        "CLUSTER",
        "GETKEYSINSLOT",
        slot,
        100,
      ) as string[];
      if (keys.length === 0) break;
      await adminCall(
        url(source.port),
        "MIGRATE",
        "127.0.0.1",
        target.port,
        "",
        0,
        5_000,
        "KEYS",
        ...keys,
      );
    }
    for (const m of masters) {
      await adminCall(url(m.port), "CLUSTER", "SETSLOT", slot, "NODE", target.id);
    }
    assert.equal((await masterOf(cluster.urls[0]!, "{mq}")).port, target.port);

    // Jobs now, delayed ones (their wake-up is a shard message), and a cancel of a running
    // job (the same) all work on the new master.
    const after = await queue.enqueueMany(
      add,
      Array.from({ length: 100 }, (_, i) => ({ data: { a: i, b: 0 } })),
    );
    const later = await queue.enqueue(add, { a: 5, b: 5 }, { delay: 300 });
    assert.deepEqual(
      await Promise.all(after.map((h) => h.result(soon()))),
      Array.from({ length: 100 }, (_, i) => i),
    );
    assert.equal(await later.result(soon()), 10);
    await waitForRedis(async () => {
      const shard = await adminCall(url(target.port), "PUBSUB", "SHARDCHANNELS") as string[];
      return ["cancel", "wake", "pause"].every((c) => shard.includes(`sluice:{mq}:${c}`));
    }, "the worker's subscriptions on the new master");
    const held = await queue.enqueue(hold, null);
    await started.promise;
    assert.equal((await queue.job(held.id).cancel()).cancelled, true);
    await assert.rejects(held.result(soon()), CancelledError);
    // Nothing of the queue is left on the old master: no reads, no subscriptions.
    assert.deepEqual(await adminCall(url(source.port), "PUBSUB", "SHARDCHANNELS"), []);
    assert.doesNotMatch(
      String(await adminCall(url(source.port), "CLIENT", "LIST")),
      /name=sluice:blocking:/,
    );
    assert.match(
      String(await adminCall(url(target.port), "CLIENT", "LIST")),
      /name=sluice:blocking:/,
    );
  } finally {
    await worker.stop();
    await running;
  }
});

Deno.test("Redis Cluster: a queue with 3 priorities keeps every priority's stream on its slot, and runs jobs of all three", async () => {
  await using cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
  const redis = { cluster: [cluster.urls[0]!] };
  const priorities = ["bulk", "normal", "urgent"];
  await using queue = new Queue("pq", { redis, priorities });
  const which = task("which", (_: null, ctx) => ctx.job.priority);
  const handles = await queue.enqueueMany(
    which,
    Array.from({ length: 30 }, (_, i) => ({ data: null, priority: priorities[i % 3]! })),
  );
  const keys = [
    queue.keys.stream,
    queue.keys.lane("normal"),
    queue.keys.lane("urgent"),
    queue.keys.priorities,
  ];
  for (const key of keys) assert.equal(keySlot(key), keySlot(queue.keys.stream), key);
  const owner = await masterOf(cluster.urls[0]!, queue.keys.stream);
  assert.equal(
    await adminCall(`redis://127.0.0.1:${owner.port}`, "EXISTS", ...keys),
    4,
    "all on the queue's master",
  );
  const stats: { waiting: number; waitingByPriority?: Record<string, number> } = await queue
    .stats();
  assert.equal(stats.waiting, 30);
  assert.deepEqual(stats.waitingByPriority, { bulk: 10, normal: 10, urgent: 10 });
  const worker = new Worker("pq", [which], { redis, priorities, concurrency: 4 });
  const running = worker.run();
  try {
    assert.deepEqual(
      await Promise.all(handles.map((h) => h.result(soon()))),
      Array.from({ length: 30 }, (_, i) => priorities[i % 3]),
    );
  } finally {
    await worker.stop();
    await running;
  }
});

/** A bound on each wait for a result, so a hang fails the test instead of the run. */
function soon(): { signal: AbortSignal } {
  return { signal: AbortSignal.timeout(30_000) };
}

async function adminCall(url: string, ...args: (string | number)[]): Promise<unknown> {
  await using admin = inspect(url);
  return await admin.call(...(args.map(String) as [string, ...string[]]));
}

import assert from "node:assert/strict";
import { Cluster, Redis } from "ioredis";
import { startCluster, startSentinel } from "../src/testing.ts";
import { inspect, waitForRedis } from "./_helpers.ts";
import { attempt, clusterNodes, type NodeLine, ownerOf } from "./_cluster.ts";

Deno.test("startCluster() serves every slot and survives the loss of a master", async () => {
  await using cluster = await startCluster({ masters: 3, replicasPerMaster: 1 });
  assert.equal(cluster.nodes.length, 6);
  assert.deepEqual(cluster.urls, cluster.nodes.map(({ port }) => `redis://127.0.0.1:${port}`));
  assert.equal(cluster.nodes.filter((n) => n.role === "master").length, 3);
  assert.equal(cluster.nodes.filter((n) => n.role === "replica").length, 3);

  let nodes: NodeLine[];
  {
    // Closed before the kill below, which may hit this node.
    await using admin = inspect(cluster.urls[0]!);
    const info = String(await admin.call("CLUSTER", "INFO"));
    assert.match(info, /cluster_state:ok/);
    assert.match(info, /cluster_slots_assigned:16384/);
    nodes = clusterNodes(await admin.call("CLUSTER", "NODES"));
  }
  const masters = nodes.filter((n) => n.flags.includes("master"));
  assert.equal(masters.length, 3);
  assert.equal(nodes.filter((n) => n.flags.includes("slave")).length, 3);
  const covered = masters.flatMap((n) => n.slots).reduce((sum, [a, b]) => sum + b - a + 1, 0);
  assert.equal(covered, 16384);

  const client = new Cluster(cluster.nodes.map(({ port }) => ({ host: "127.0.0.1", port })));
  client.on("node error", () => {}); // the killed node's connection fails below
  try {
    // Hash tags until two keys live on different masters.
    const keys = new Map<number, { key: string; slot: number }>();
    for (let i = 0; keys.size < 2; i++) {
      const key = `{tag${i}}:k`;
      const slot = Number(await client.call("CLUSTER", "KEYSLOT", key));
      keys.set(ownerOf(nodes, slot)!.port, { key, slot });
    }
    for (const { key } of keys.values()) await client.set(key, key);
    for (const { key } of keys.values()) assert.equal(await client.get(key), key);

    const [port, { key, slot }] = [...keys][0]!;
    const killed = nodes.find((n) => n.port === port)!;
    await cluster.killNode(cluster.nodes.findIndex((n) => n.port === port));

    const survivor = cluster.nodes.find((n) => n.port !== port)!;
    await using watcher = inspect(survivor.url);
    const promoted = await waitForRedis(
      async () => {
        const info = await attempt(() => watcher.call("CLUSTER", "INFO"));
        if (!String(info).includes("cluster_state:ok")) return false;
        const now = clusterNodes(await watcher.call("CLUSTER", "NODES"));
        const gone = now.find((n) => n.id === killed.id)!;
        const owner = ownerOf(now, slot);
        return gone.flags.includes("fail") && owner !== undefined && owner.port !== port && owner;
      },
      "a replica to take over the killed master's slots",
      15_000,
    );
    // The new owner was the killed master's replica.
    assert.equal(nodes.find((n) => n.id === promoted.id)?.master, killed.id);

    await waitForRedis(
      () => attempt(async () => (await client.set(key, "after")) === "OK"),
      "the Cluster client to write to the promoted replica",
      10_000,
    );
    assert.equal(await client.get(key), "after");
  } finally {
    await client.quit();
  }
});

Deno.test("startSentinel() serves a master through the Sentinels and fails over", async () => {
  await using setup = await startSentinel({ replicas: 1, sentinels: 3 });
  assert.equal(setup.masterName, "mymaster");
  assert.equal(setup.replicas.length, 1);
  assert.equal(setup.sentinels.length, 3);
  assert.ok(setup.sentinels.every((s) => s.pid > 0));
  assert.deepEqual(setup.sentinelOptions, {
    sentinels: setup.sentinels.map(({ port }) => ({ host: "127.0.0.1", port })),
    name: "mymaster",
  });

  const client = new Redis(setup.sentinelOptions);
  client.on("error", () => {}); // refused connections to the killed master
  try {
    await client.set("k", "before");
    assert.equal(await client.get("k"), "before");
    assert.equal((await client.call("ROLE") as string[])[0], "master");

    await setup.killMaster();
    const promoted = await setup.waitForFailover(15_000);
    assert.equal(promoted.host, "127.0.0.1");
    assert.notEqual(promoted.port, setup.master.port);
    assert.equal(promoted.port, setup.replicas[0]!.port);

    await waitForRedis(
      () => attempt(async () => (await client.set("k", "after")) === "OK"),
      "the Sentinel client to write to the new master",
      10_000,
    );
    assert.equal(await client.get("k"), "after");
  } finally {
    await client.quit();
  }
});

Deno.test("startCluster() and startSentinel() reject bad shapes before starting anything", async () => {
  await assert.rejects(
    startCluster({ masters: 2 }),
    new RangeError(
      "Cannot start a Redis Cluster as masters must be an integer >= 3: current value is 2",
    ),
  );
  await assert.rejects(startCluster({ replicasPerMaster: -1 }), RangeError);
  await assert.rejects(startSentinel({ sentinels: 0 }), RangeError);
  await assert.rejects(startSentinel({ masterName: "my master" }), TypeError);
});

Deno.test("startCluster() names the package to install when redis-cli is missing", async () => {
  const script = `import { startCluster } from ${
    JSON.stringify(
      new URL("../src/testing.ts", import.meta.url).href,
    )
  };
try { await startCluster(); } catch (err) { console.log(String(err)); }`;
  const { stdout, success } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", script],
    env: { PATH: "/nonexistent" },
    stdin: "null",
  }).output();
  assert.ok(success);
  assert.equal(
    new TextDecoder().decode(stdout).trim(),
    "Error: Cannot start a Redis Cluster: redis-cli is not on PATH; install it with Redis " +
      "(on Debian and Ubuntu: apt-get install redis-tools)",
  );
});

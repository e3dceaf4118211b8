/**
 * Each connection role follows a Sentinel failover: the shared command connection, the
 * subscriber and a consumer's blocking connection all end up on the new master, whether the
 * old one died or lives on (a manual failover, or a partition).
 */
import assert from "node:assert/strict";
import { Queue, task, Worker } from "../mod.ts";
import { startSentinel } from "../src/testing.ts";
import { inspect, waitForRedis } from "./_helpers.ts";

/** The roles of sluice's connections to the Redis at `url`, from CLIENT LIST. */
async function roles(url: string): Promise<string[]> {
  await using db = inspect(url);
  const list = await db.client("LIST") as string;
  return [...list.matchAll(/ name=sluice:(\w+):/g)].map((m) => m[1]!).sort();
}

for (const how of ["kill -9 of the master", "SENTINEL FAILOVER (the old master lives on)"]) {
  Deno.test(`every connection role follows a Sentinel failover: ${how}`, async () => {
    await using setup = await startSentinel({ replicas: 1, sentinels: 3 });
    const redis = setup.sentinelOptions;
    const echo = task("echo", async (data: { ms: number; n: number }) => {
      await new Promise((resolve) => setTimeout(resolve, data.ms));
      return data.n;
    });
    const quiet = { warn: () => {}, error: () => {} };
    await using queue = new Queue("q", { redis, logger: quiet });
    const worker = new Worker("q", [echo], { redis, logger: quiet, handleSignals: false });
    const running = worker.run();
    try {
      assert.equal(await (await queue.enqueue(echo, { ms: 0, n: 1 })).result(), 1);
      assert.deepEqual(await roles(setup.master.url), ["blocking", "command", "subscriber"]);
      const started = Date.now();
      if (how.startsWith("kill")) {
        await setup.killMaster();
      } else {
        await using sentinel = inspect(`redis://127.0.0.1:${setup.sentinels[0]!.port}`);
        assert.equal(await sentinel.call("SENTINEL", "FAILOVER", setup.masterName), "OK");
      }
      const { port } = await setup.waitForFailover();
      const url = `redis://127.0.0.1:${port}`;
      // All three move over. With the old master alive, the Sentinels demote it only some
      // 10 s later; until then, a connection that stayed would write to a master about to
      // drop its writes. They must move well before that.
      await waitForRedis(
        async () => (await roles(url)).join() === "blocking,command,subscriber",
        "the command, subscriber and blocking connections on the new master",
        5_000,
      );
      if (!how.startsWith("kill")) {
        await using old = inspect(setup.master.url);
        assert.equal((await old.role())[0], "master", "moved before the old master was demoted");
        assert.deepEqual(await roles(setup.master.url), [], "nothing left on the old master");
      }
      // And they work there: a job enqueued now runs (blocking read, settle on the command
      // connection), and result() hears its outcome (subscriber).
      const handle = await queue.enqueue(echo, { ms: 50, n: 2 });
      assert.equal(await handle.result({ signal: AbortSignal.timeout(10_000) }), 2);
      assert.ok(Date.now() - started < 20_000);
    } finally {
      await worker.stop();
      await running;
    }
  });
}

Deno.test("through Sentinel, each connection watches for failovers, and closing it stops that", async () => {
  await using setup = await startSentinel({ replicas: 0, sentinels: 1 });
  await using sentinel = inspect(`redis://127.0.0.1:${setup.sentinels[0]!.port}`);
  const count = async () => ((await sentinel.client("LIST")) as string).trim().split("\n").length;
  const alone = await count();
  {
    await using queue = new Queue("q", { redis: setup.sentinelOptions });
    await queue.enqueue("t", 1); // the command connection, found through the Sentinel
    // It subscribes to +switch-master on the Sentinel once connected.
    await waitForRedis(async () => (await count()) === alone + 1, "a failover watcher");
  }
  await waitForRedis(async () => (await count()) === alone, "no watcher left after close");
});

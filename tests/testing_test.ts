import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { startRedis, type TestRedis } from "../src/testing.ts";

/** Opens a client, runs `fn` with it, and quits it before returning. */
async function withClient<T>(redis: TestRedis, fn: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis(redis.url, { maxRetriesPerRequest: 0 });
  try {
    return await fn(client);
  } finally {
    await client.quit();
  }
}

/** Resolves to the error a TCP connect to `port` gets, or undefined if it connects. */
async function connectError(port: number): Promise<unknown> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return undefined;
  } catch (err) {
    return err;
  }
}

async function assertRefused(port: number): Promise<void> {
  const err = await connectError(port);
  assert.ok(err instanceof Deno.errors.ConnectionRefused, `port ${port}: ${err}`);
}

Deno.test("startRedis() serves a url that answers PING", async () => {
  await using redis = await startRedis();
  assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
  assert.ok(redis.port > 0);
  assert.ok(redis.pid > 0);
  assert.equal(await withClient(redis, (c) => c.ping()), "PONG");
});

Deno.test("startRedis() gives two servers different ports", async () => {
  await using a = await startRedis();
  await using b = await startRedis();
  assert.notEqual(a.port, b.port);
  assert.notEqual(a.pid, b.pid);
  await withClient(a, (c) => c.set("who", "a"));
  assert.equal(await withClient(b, (c) => c.get("who")), null);
});

Deno.test("startRedis() listens on the port it is given", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  await using redis = await startRedis({ port });
  assert.equal(redis.port, port);
  assert.equal(await withClient(redis, (c) => c.ping()), "PONG");
});

Deno.test("startRedis() rejects when the given port is taken", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await assert.rejects(
    startRedis({ port: listener.addr.port }),
    /^Error: Cannot start redis-server on port \d+: it exited/,
  );
});

Deno.test("startRedis() passes extra arguments to redis-server", async () => {
  await using redis = await startRedis({ args: ["--maxmemory", "10mb"] });
  const config = await withClient(redis, (c) => c.config("GET", "maxmemory"));
  assert.deepEqual(config, ["maxmemory", String(10 * 1024 * 1024)]);
});

Deno.test("kill() stops the server so that its port refuses connections", async () => {
  await using redis = await startRedis();
  assert.equal(await connectError(redis.port), undefined);
  await redis.kill();
  await assertRefused(redis.port);
  assert.equal(redis.pid, 0);
});

Deno.test("restart() after kill() answers PING again on the same port", async () => {
  await using redis = await startRedis();
  const { port, pid } = redis;
  await redis.kill();
  await assertRefused(port);
  await redis.restart();
  assert.equal(redis.port, port);
  assert.ok(redis.pid > 0);
  assert.notEqual(redis.pid, pid);
  assert.equal(await withClient(redis, (c) => c.ping()), "PONG");
});

Deno.test("restart() of a running server replaces it with a new process", async () => {
  await using redis = await startRedis();
  const { pid } = redis;
  await redis.restart();
  assert.notEqual(redis.pid, pid);
  assert.equal(await withClient(redis, (c) => c.ping()), "PONG");
});

Deno.test('a key written before kill() survives restart() with persistence "always"', async () => {
  await using redis = await startRedis({ persistence: "always" });
  await withClient(redis, async (c) => {
    await c.set("kept", "yes");
    await c.xadd("stream", "*", "n", "1");
  });
  await redis.kill();
  await redis.restart();
  await withClient(redis, async (c) => {
    assert.equal(await c.get("kept"), "yes");
    assert.equal(await c.xlen("stream"), 1);
  });
});

Deno.test('a key written before kill() is gone after restart() with persistence "none"', async () => {
  await using redis = await startRedis();
  await withClient(redis, (c) => c.set("kept", "yes"));
  await redis.kill();
  await redis.restart();
  assert.equal(await withClient(redis, (c) => c.get("kept")), null);
});

Deno.test("stop() removes the data directory and frees the port", async () => {
  const redis = await startRedis({ persistence: "always" });
  try {
    const [, dir] = await withClient(redis, (c) => c.config("GET", "dir")) as [string, string];
    assert.ok((await Deno.stat(dir)).isDirectory);
    await redis.stop();
    await assert.rejects(Deno.stat(dir), Deno.errors.NotFound);
    await assertRefused(redis.port);
  } finally {
    await redis.stop();
  }
});

Deno.test("stop() is idempotent", async () => {
  const redis = await startRedis();
  await redis.stop();
  await redis.stop();
  await assertRefused(redis.port);
});

Deno.test("disposing the server stops it", async () => {
  let port = 0;
  {
    await using redis = await startRedis();
    port = redis.port;
    assert.equal(await connectError(port), undefined);
  }
  await assertRefused(port);
});

import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { ConnectionError, ValidationError } from "../src/errors.ts";
import { Queue } from "../src/queue.ts";
import { sharedRedis } from "./_helpers.ts";
import { startRedis } from "../src/testing.ts";

const quiet = { info() {}, warn() {}, error() {} };

/** A URL where nothing listens: a throwaway Redis's, after it stopped. */
async function deadRedis(): Promise<{ url: string; port: number }> {
  const redis = await startRedis();
  await redis.stop();
  return { url: redis.url, port: redis.port };
}

Deno.test("enqueueMany() refuses an item without data, naming its index, and writes nothing", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const cases: [unknown[], RegExp][] = [
    [
      [{ n: 1 }],
      /^Cannot enqueue t: item 0 has no data \(give data: null for none\), got \{"n":1\}$/,
    ],
    [[{ data: 1 }, { id: "b" }], /^Cannot enqueue t: item 1 has no data .*, got \{"id":"b"\}$/],
    [[{ data: 1 }, null], /^Cannot enqueue t: item 1 must be an object like \{ data \}, got null/],
    [[7], /^Cannot enqueue t: item 0 must be an object like \{ data \}, got 7$/],
  ];
  for (const [items, message] of cases) {
    await assert.rejects(
      queue.enqueueMany("t", items as { data: unknown }[]),
      (err: unknown) => {
        assert.ok(err instanceof ValidationError);
        assert.match(err.message, message);
        return true;
      },
    );
  }
  const db = new Redis(redis.url);
  try {
    assert.equal(await db.exists(queue.keys.stream), 0);
  } finally {
    await db.quit();
  }
});

Deno.test("enqueueMany() takes data: null or an explicit data: undefined, written as null like enqueue() does", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const [a, b] = await queue.enqueueMany("t", [{ data: null, id: "a" }, {
    data: undefined,
    id: "b",
  }]);
  const c = await queue.enqueue("t", undefined, { id: "c" });
  assert.deepEqual([a!.id, b!.id, c.id], ["a", "b", "c"]);
  const db = new Redis(redis.url);
  try {
    const entries = await db.xrange(queue.keys.stream, "-", "+");
    assert.deepEqual(entries.map(([, fields]) => fields[fields.indexOf("data") + 1]), [
      "null",
      "null",
      "null",
    ]);
  } finally {
    await db.quit();
  }
});

Deno.test("enqueue() to a Redis that never answered fails soon with ConnectionError naming the queue, the address and the reason", async () => {
  const { url, port } = await deadRedis();
  await using queue = new Queue("mail", { redis: url, logger: quiet });
  const started = Date.now();
  const err = await queue.enqueue("welcome", { to: "a" }).catch((e) => e);
  assert.ok(err instanceof ConnectionError, String(err));
  assert.equal(
    err.message,
    `Cannot enqueue welcome on queue mail: Redis at 127.0.0.1:${port} is unreachable (ECONNREFUSED)`,
  );
  assert.equal((err.cause as { code?: string }).code, "ECONNREFUSED");
  // Not ioredis's 20 retries (about 33 s): a few refused attempts are enough.
  assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
  // Once known to be unreachable, the next call says so at once, enqueueMany too.
  await assert.rejects(
    queue.enqueueMany("welcome", [{ data: 1 }, { data: 2 }]),
    (e: unknown) => e instanceof ConnectionError && e.message === err.message,
  );
});

Deno.test("enqueue() calls waiting together for a Redis that never answered share one wait", async () => {
  const { url } = await deadRedis();
  await using queue = new Queue("q", { redis: url, logger: quiet });
  // The process's command connection for that Redis: the one the queue enqueues on.
  await using shared = sharedRedis(url);
  const client = shared.command;
  const before = client.listenerCount("error");
  const calls = Array.from({ length: 30 }, (_, i) => queue.enqueue("t", i).catch((e) => e));
  assert.ok(client.listenerCount("error") <= before + 1, `${client.listenerCount("error")}`);
  const errors = await Promise.all(calls);
  assert.ok(errors.every((e) => e instanceof ConnectionError), String(errors[0]));
  assert.equal(client.listenerCount("error"), before);
});

Deno.test("enqueue() names the host and port of an options object in its ConnectionError", async () => {
  const { port } = await deadRedis();
  await using queue = new Queue("q", { redis: { host: "127.0.0.1", port, db: 2 }, logger: quiet });
  await assert.rejects(
    queue.enqueue("t", 1),
    (err: unknown) => {
      assert.ok(err instanceof ConnectionError);
      assert.match(err.message, new RegExp(`Redis at 127\\.0\\.0\\.1:${port} is unreachable`));
      return true;
    },
  );
});

Deno.test("enqueue() after the connection was lost fails with ConnectionError when ioredis gives up", async () => {
  await using redis = await startRedis();
  // One retry instead of 20, so that ioredis gives up in a fraction of a second.
  const options = { host: "127.0.0.1", port: redis.port, maxRetriesPerRequest: 1 };
  await using queue = new Queue("q", { redis: options, logger: quiet });
  await queue.enqueue("t", 1);
  await redis.stop();
  await assert.rejects(
    queue.enqueue("t", 2),
    (err: unknown) => {
      assert.ok(err instanceof ConnectionError, String(err));
      assert.match(
        err.message,
        new RegExp(
          `^Cannot enqueue t on queue q: Redis at 127\\.0\\.0\\.1:${redis.port} is unreachable \\(`,
        ),
      );
      assert.ok(err.cause instanceof Error);
      return true;
    },
  );
});

Deno.test("enqueue() with an aborted signal rejects with its reason and writes nothing", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const reason = new Error("request cancelled");
  await assert.rejects(
    queue.enqueue("t", 1, { signal: AbortSignal.abort(reason) }),
    (err: unknown) => err === reason,
  );
  await assert.rejects(
    queue.enqueueMany("t", [{ data: 1 }], { signal: AbortSignal.abort(reason) }),
    (err: unknown) => err === reason,
  );
  assert.deepEqual(await queue.stats().then((s) => s.waiting), 0);
  await assert.rejects(
    queue.enqueue("t", 1, { signal: "soon" as unknown as AbortSignal }),
    /^TypeError: Cannot enqueue t: signal must be an AbortSignal, got "soon"$/,
  );
});

Deno.test("enqueue() waiting for a Redis that never answered rejects with the signal's reason when it aborts", async () => {
  const { url } = await deadRedis();
  // maxRetriesPerRequest null: wait for the connection for ever, unless the signal says stop.
  await using queue = new Queue("q", {
    redis: { ...redisOptions(url), maxRetriesPerRequest: null },
    logger: quiet,
  });
  const controller = new AbortController();
  const reason = new Error("gave up");
  const pending = queue.enqueueMany("t", [{ data: 1 }], { signal: controller.signal });
  controller.abort(reason);
  await assert.rejects(pending, (err: unknown) => err === reason);
});

Deno.test("enqueue() to a Redis that went away rejects soon after its signal aborts, and close() does not wait for it", async () => {
  await using redis = await startRedis();
  const queue = new Queue("q", { redis: redis.url, logger: quiet });
  await queue.enqueue("t", 1);
  await using shared = sharedRedis(redis.url);
  const client = shared.command;
  const reconnecting = new Promise((resolve) => client.once("reconnecting", resolve));
  await redis.stop();
  await reconnecting;
  // The call now waits in ioredis's queue, which holds it for about 33 s by default.
  const started = Date.now();
  const err = await queue.enqueue("t", 2, { id: "late", signal: AbortSignal.timeout(300) })
    .catch((e) => e);
  assert.ok(err instanceof DOMException && err.name === "TimeoutError", String(err));
  assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
  await queue.close();
  assert.ok(Date.now() - started < 10_000, `close() took until ${Date.now() - started} ms`);
});

function redisOptions(url: string): { host: string; port: number } {
  const { hostname, port } = new URL(url);
  return { host: hostname, port: Number(port) };
}

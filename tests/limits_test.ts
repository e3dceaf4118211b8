import assert from "node:assert/strict";
import {
  OutOfMemoryError,
  PayloadTooLargeError,
  Queue,
  SluiceError,
  task,
  ValidationError,
  Worker,
} from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { inspect } from "./_helpers.ts";

const quiet = { info() {}, warn() {}, error() {} };

Deno.test("new Queue() and new Worker() reject a maxPayloadBytes that is not an integer from 1 to 512 MiB", () => {
  for (const bad of [0, -1, 1.5, NaN, Infinity, 512 * 1_048_576 + 1, "1000"]) {
    assert.throws(
      () => new Queue("q", { maxPayloadBytes: bad as number }),
      (err: Error) => {
        assert.ok(err instanceof RangeError, String(err));
        assert.equal(
          err.message,
          `Cannot create queue: maxPayloadBytes must be an integer from 1 to 536870912, got ${
            typeof bad === "string" ? `"${bad}"` : bad
          }`,
        );
        return true;
      },
    );
  }
  assert.throws(
    () => new Worker("q", [task("t", () => {})], { maxPayloadBytes: 0 }),
    /maxPayloadBytes must be an integer from 1/,
  );
  new Queue("q", { maxPayloadBytes: 1 });
  new Queue("q", { maxPayloadBytes: 512 * 1_048_576 });
});

Deno.test("enqueue() takes data of exactly maxPayloadBytes, and throws PayloadTooLargeError one byte over, writing nothing", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, maxPayloadBytes: 100 });
  await using db = inspect(redis.url);
  // 48 two-byte characters and the quotes: 98 bytes of JSON in 50 characters.
  const fits = "é".repeat(48) + "ab";
  assert.equal(new TextEncoder().encode(JSON.stringify(fits)).length, 100);
  await queue.enqueue("t", fits, { id: "fits" });
  const over = "é".repeat(48) + "abc";
  await assert.rejects(
    queue.enqueue("t", over, { id: "over" }),
    (err: Error) => {
      assert.ok(err instanceof PayloadTooLargeError && err instanceof SluiceError, String(err));
      assert.equal(
        err.message,
        "Cannot enqueue t: data must be at most maxPayloadBytes 100 bytes of JSON, got 101",
      );
      return true;
    },
  );
  assert.equal(await db.exists(queue.keys.job("over")), 0);
  assert.equal(await db.xlen(queue.keys.stream), 1);
});

Deno.test("enqueueMany() writes nothing of a batch with one item over the limit, even a delayed one", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, maxPayloadBytes: 1_000 });
  await using db = inspect(redis.url);
  const items = Array.from(
    { length: 250 },
    (_, i) => ({ id: `j${i}`, data: i as unknown, delay: i % 2 }),
  );
  items[200] = { id: "big", data: "x".repeat(1_000), delay: 5_000 };
  await assert.rejects(queue.enqueueMany("t", items), PayloadTooLargeError);
  assert.equal(await db.dbsize(), 0);
});

Deno.test("the default limit is 1 MiB of JSON", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  const exactly = "x".repeat(1_048_576 - 2);
  await queue.enqueue("t", exactly);
  await assert.rejects(
    queue.enqueue("t", exactly + "x"),
    /at most maxPayloadBytes 1048576 bytes of JSON, got 1048577/,
  );
});

Deno.test("enqueue() refuses data with a __proto__ key with ValidationError, writing nothing", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const hostile = JSON.parse('{"a":[{"__proto__":{"polluted":1}}]}');
  await assert.rejects(
    queue.enqueue("t", hostile),
    (err: Error) => {
      assert.ok(err instanceof ValidationError, String(err));
      assert.equal(
        err.message,
        "Cannot enqueue t: data has a key named __proto__, which sluice refuses",
      );
      return true;
    },
  );
  await queue.enqueue("t", { key: "__proto__" }); // a value is fine
  assert.equal(await db.xlen(queue.keys.stream), 1);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("enqueue() on a Redis at maxmemory rejects with OutOfMemoryError and writes nothing", async () => {
  // maxmemory 1 byte: every write that may grow memory is refused.
  await using redis = await startRedis({
    args: ["--maxmemory", "1", "--maxmemory-policy", "noeviction"],
  });
  await using queue = new Queue("images", { redis: redis.url });
  await using db = inspect(redis.url);
  const attempts = [
    () => queue.enqueue("t", 1, { id: "now" }),
    () => queue.enqueue("t", 1, { id: "later", delay: 60_000 }),
    () => queue.enqueueMany("t", Array.from({ length: 250 }, (_, i) => ({ data: i }))),
  ];
  for (const attempt of attempts) {
    await assert.rejects(attempt(), (err: Error) => {
      assert.ok(err instanceof OutOfMemoryError && err instanceof SluiceError, String(err));
      assert.match(
        err.message,
        /^Cannot enqueue to images: Redis is out of memory \(maxmemory reached\): OOM command not allowed when used memory > 'maxmemory'/,
      );
      assert.doesNotMatch(err.message, /were written/);
      assert.match(String((err.cause as Error)?.message), /^OOM/);
      return true;
    });
  }
  assert.equal(await db.dbsize(), 0, "no stream entry, delayed entry or record");
});

Deno.test("enqueueMany() on OOM writes each script call whole or not at all, and says how many jobs were written", async () => {
  await using redis = await startRedis({ args: ["--maxmemory-policy", "noeviction"] });
  await using queue = new Queue("q", { redis: redis.url, maxPayloadBytes: 8 * 1_048_576 });
  await using db = inspect(redis.url);
  const used = Number((await db.info("memory")).match(/used_memory:(\d+)/)![1]);
  await db.config("SET", "maxmemory", String(used + 1_048_576));
  // Three script calls of 100, 100 and 50 jobs. The last holds one of 3 MiB: its arguments
  // alone take Redis over maxmemory, so the call is refused at its first write.
  const items = Array.from({ length: 250 }, (_, i) => ({ id: `j${i}`, data: i as unknown }));
  items[220]!.data = "x".repeat(3 * 1_048_576);
  await assert.rejects(queue.enqueueMany("t", items), (err: Error) => {
    assert.ok(err instanceof OutOfMemoryError, String(err));
    assert.match(err.message, /\(200 of 250 jobs were written, in whole batches of 100\)$/);
    return true;
  });
  await db.config("SET", "maxmemory", "0");
  const entries = await db.xrange(queue.keys.stream, "-", "+");
  const ids = new Set(entries.map(([, f]) => f[f.indexOf("id") + 1]));
  assert.equal(ids.size, 200);
  for (let i = 0; i < 250; i++) {
    const written = i < 200;
    assert.equal(ids.has(`j${i}`), written, `j${i}`);
    assert.equal(await db.exists(queue.keys.job(`j${i}`)), written ? 1 : 0, `record of j${i}`);
  }
});

Deno.test("a worker warns once at start when Redis may evict keys (maxmemory-policy allkeys-lru)", async () => {
  await using redis = await startRedis({ args: ["--maxmemory-policy", "allkeys-lru"] });
  const warnings: string[] = [];
  const warned = Promise.withResolvers<void>();
  const logger = {
    ...quiet,
    warn(message: string) {
      warnings.push(message);
      if (message.includes("maxmemory-policy")) warned.resolve();
    },
  };
  const worker = new Worker("q", [task("t", () => {})], {
    redis: redis.url,
    handleSignals: false,
    logger,
  });
  const running = worker.run();
  await warned.promise;
  await worker.stop();
  await running;
  const about = warnings.filter((w) => w.includes("maxmemory-policy"));
  assert.equal(about.length, 1, about.join("\n"));
  assert.match(
    about[0]!,
    /^sluice: worker q: Redis maxmemory-policy is allkeys-lru, not noeviction: /,
  );
  assert.match(about[0]!, /silently deletes queued jobs/);
});

for (
  const [name, args] of [
    ["with maxmemory-policy noeviction", []],
    ["when CONFIG is disabled", ["--rename-command", "CONFIG", ""]],
  ] as const
) {
  Deno.test(`a worker logs nothing about eviction ${name}`, async () => {
    await using redis = await startRedis({ args });
    const logged: string[] = [];
    const logger = {
      info() {},
      warn: (m: string) => logged.push(m),
      error: (m: string) => logged.push(m),
    };
    const done = Promise.withResolvers<void>();
    const worker = new Worker("q", [task("t", () => done.resolve())], {
      redis: redis.url,
      handleSignals: false,
      logger,
    });
    await using queue = new Queue("q", { redis: redis.url });
    await queue.enqueue("t", 1);
    const running = worker.run();
    // The check is answered before the worker's first read, so it is over once a job ran.
    await done.promise;
    await worker.stop();
    await running;
    assert.deepEqual(logged, []);
  });
}

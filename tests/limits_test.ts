import assert from "node:assert/strict";
import { PayloadTooLargeError, Queue, SluiceError, task, ValidationError, Worker } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { inspect } from "./_helpers.ts";

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

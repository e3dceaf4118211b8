import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { encodeFields, type WireJob } from "../src/codec.ts";
import { ValidationError } from "../src/errors.ts";
import { RECORD_TTL_MS } from "../src/keys.ts";
import { Queue } from "../src/queue.ts";
import { Signer } from "../src/sign.ts";
import { type StandardSchemaV1, task } from "../src/task.ts";
import { startRedis, type TestRedis } from "../src/testing.ts";

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A raw client to look at what the queue wrote, closed with the test. */
function inspect(redis: TestRedis): Redis & AsyncDisposable {
  const client = new Redis(redis.url) as Redis & AsyncDisposable;
  client[Symbol.asyncDispose] = async () => {
    await client.quit();
  };
  return client;
}

/** Accepts `{ width: number }` with width >= 1, and rounds the width. */
const sizeSchema: StandardSchemaV1<unknown, { width: number }> = {
  "~standard": {
    version: 1,
    vendor: "test",
    validate(value) {
      const width = (value as { width?: unknown } | null)?.width;
      if (typeof width !== "number" || width < 1) {
        return { issues: [{ message: "width must be a number >= 1", path: ["width"] }] };
      }
      return { value: { width: Math.round(width) } };
    },
  },
};

const resize = task("resize", (data: { width: number }) => data.width, { schema: sizeSchema });
const plain = task("plain", (data: unknown) => data);

/** The fields of a stream entry as an object. */
function fieldMap(fields: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i]!] = fields[i + 1]!;
  return out;
}

Deno.test("Queue keys carry the queue name as a hash tag", () => {
  const queue = new Queue("images");
  assert.equal(queue.keys.stream, "sluice:{images}:stream");
  assert.equal(queue.keys.dead, "sluice:{images}:dead");
  assert.equal(queue.keys.workers, "sluice:{images}:workers");
  assert.equal(queue.group, "sluice");
  assert.equal(queue.name, "images");
});

Deno.test("Queue keys use the given prefix and group", () => {
  const queue = new Queue("images", { prefix: "app.v2", group: "resizers" });
  assert.equal(queue.keys.stream, "app.v2:{images}:stream");
  assert.equal(queue.group, "resizers");
});

for (
  const [label, options] of [
    ["an empty queue name", { name: "" }],
    ["a queue name with a brace", { name: "a{b}" }],
    ["a queue name with a space", { name: "a b" }],
    ["a queue name of 201 characters", { name: "q".repeat(201) }],
    ["a non-string queue name", { name: 7 }],
    ["an empty prefix", { prefix: "" }],
    ["a prefix with a brace", { prefix: "p{" }],
    ["an empty group", { group: "" }],
    ["a group with a slash", { group: "a/b" }],
    ["a redis option that is a number", { redis: 6379 }],
    ["a null redis option", { redis: null }],
  ] as const
) {
  Deno.test(`new Queue() throws TypeError on ${label}`, () => {
    const { name = "q", ...rest } = options as { name?: unknown };
    assert.throws(
      () => new Queue(name as string, rest as Record<string, never>),
      (err: unknown) => {
        assert.ok(err instanceof TypeError);
        assert.match(err.message, /^Cannot create queue: /);
        return true;
      },
    );
  });
}

Deno.test("enqueue() writes one entry with the v1 wire fields", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("images", { redis: redis.url });
  const before = Date.now();
  const handle = await queue.enqueue(resize, { width: 100 });
  const after = Date.now();

  assert.equal(await r.xlen("sluice:{images}:stream"), 1);
  const entries = await r.xrange("sluice:{images}:stream", "-", "+");
  assert.equal(entries.length, 1);
  const [entryId, fields] = entries[0]!;
  assert.equal(handle.entryId, entryId);
  assert.deepEqual(fields.filter((_, i) => i % 2 === 0), [
    "v",
    "id",
    "task",
    "data",
    "attempt",
    "enq",
  ]);
  const f = fieldMap(fields);
  assert.equal(f.v, "1");
  assert.equal(f.id, handle.id);
  assert.equal(f.task, "resize");
  assert.deepEqual(JSON.parse(f.data!), { width: 100 });
  assert.equal(f.attempt, "1");
  const enq = Number(f.enq);
  assert.ok(enq >= before && enq <= after, `enq ${enq} not in [${before}, ${after}]`);
});

Deno.test("enqueue() keeps the id it is given", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("images", { redis: redis.url });
  const handle = await queue.enqueue(resize, { width: 5 }, { id: "img-42" });
  assert.equal(handle.id, "img-42");
  const [[, fields]] = (await r.xrange(queue.keys.stream, "-", "+")) as [[string, string[]]];
  assert.equal(fieldMap(fields).id, "img-42");
});

Deno.test("enqueue() generates a UUIDv7 id when none is given", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("images", { redis: redis.url });
  const a = await queue.enqueue(resize, { width: 5 });
  const b = await queue.enqueue(resize, { width: 6 });
  assert.match(a.id, UUID_V7);
  assert.match(b.id, UUID_V7);
  assert.notEqual(a.id, b.id);
  const entries = await r.xrange(queue.keys.stream, "-", "+");
  assert.deepEqual(entries.map(([, fields]) => fieldMap(fields).id), [a.id, b.id]);
});

Deno.test("enqueue() by task name writes the name and the data unvalidated", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("images", { redis: redis.url });
  // By name, the schema of the "resize" task is not known, so width 0 is written as is.
  const handle = await queue.enqueue("resize", { width: 0 });
  const [[entryId, fields]] = (await r.xrange(queue.keys.stream, "-", "+")) as [
    [string, string[]],
  ];
  assert.equal(handle.entryId, entryId);
  const f = fieldMap(fields);
  assert.equal(f.task, "resize");
  assert.equal(f.id, handle.id);
  assert.deepEqual(JSON.parse(f.data!), { width: 0 });
});

Deno.test("enqueue() writes the value the schema outputs", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("images", { redis: redis.url });
  await queue.enqueue(resize, { width: 9.6 });
  const [[, fields]] = (await r.xrange(queue.keys.stream, "-", "+")) as [[string, string[]]];
  assert.deepEqual(JSON.parse(fieldMap(fields).data!), { width: 10 });
});

Deno.test("enqueue() writes undefined data as null", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueue(plain, undefined);
  const [[, fields]] = (await r.xrange(queue.keys.stream, "-", "+")) as [[string, string[]]];
  assert.equal(fieldMap(fields).data, "null");
});

Deno.test("enqueue() writes to the stream key under the given prefix", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("images", { redis: redis.url, prefix: "app" });
  const handle = await queue.enqueue(plain, 1);
  assert.deepEqual((await r.keys("*")).sort(), [
    "app:{images}:events",
    `app:{images}:job:${handle.id}`,
    "app:{images}:stream",
  ]);
});

Deno.test("enqueueMany() writes 10_000 entries and returns handles in order", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("bulk", { redis: redis.url });
  const items = Array.from(
    { length: 10_000 },
    (_, i) => ({ id: `job-${i}`, data: { width: i + 1 } }),
  );
  const handles = await queue.enqueueMany(resize, items);

  assert.equal(handles.length, 10_000);
  assert.deepEqual(handles.map((h) => h.id), items.map((item) => item.id));
  assert.equal(await r.xlen(queue.keys.stream), 10_000);
  const entries = await r.xrange(queue.keys.stream, "-", "+");
  assert.deepEqual(entries.map(([entryId]) => entryId), handles.map((h) => h.entryId));
  entries.forEach(([, fields], i) => {
    const f = fieldMap(fields);
    assert.equal(f.id, `job-${i}`);
    assert.equal(f.data, JSON.stringify({ width: i + 1 }));
  });
});

Deno.test("enqueueMany() writes every item when the count is one past a chunk", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("bulk", { redis: redis.url });
  const handles = await queue.enqueueMany(
    plain,
    Array.from({ length: 5_001 }, (_, i) => ({ data: i })),
  );
  assert.equal(handles.length, 5_001);
  assert.equal(await r.xlen(queue.keys.stream), 5_001);
  const [[lastEntry, lastFields]] =
    (await r.xrevrange(queue.keys.stream, "+", "-", "COUNT", 1)) as [
      [string, string[]],
    ];
  assert.equal(lastEntry, handles[5_000]!.entryId);
  assert.equal(fieldMap(lastFields).data, "5000");
});

Deno.test("enqueueMany() of nothing writes nothing and returns no handles", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("q", { redis: redis.url });
  assert.deepEqual(await queue.enqueueMany(plain, []), []);
  assert.equal(await r.exists(queue.keys.stream), 0);
});

Deno.test("enqueueMany() writes entries, delayed payloads and records as encodeFields() and the record layout say", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  for (const signingKeys of [undefined, ["k".repeat(32)]]) {
    const name = signingKeys ? "signed" : "unsigned";
    await using queue = new Queue(name, { redis: redis.url, ...(signingKeys && { signingKeys }) });
    const retry = { attempts: 3, backoff: { type: "fixed", delay: 10 } } as const;
    const before = Date.now();
    // Several batches: one of plain jobs only, one mixing schedules and per-job options.
    const items = [
      ...Array.from({ length: 150 }, (_, i) => ({ id: `p${i}`, data: i as unknown })),
      { id: "opts", data: { a: "é" }, retry, timeout: 5_000 },
      { id: "later", data: null, delay: 60_000 },
      { id: "at", data: [1], at: before + 120_000, timeout: 7 },
      { id: "now", data: "x" },
    ];
    const handles = await queue.enqueueMany(plain, items);
    const after = Date.now();
    const entries = new Map(
      (await r.xrange(queue.keys.stream, "-", "+")).map(([entryId, fields]) => [
        fieldMap(fields).id!,
        { entryId, fields },
      ]),
    );
    assert.equal(entries.size, 152);
    for (const [i, item] of items.entries()) {
      const handle = handles[i]!;
      assert.equal(handle.id, item.id);
      assert.equal(handle.duplicate, false);
      const record = await r.hgetall(queue.keys.job(item.id));
      // Field job: "<enq ms> <task>".
      const enq = Number(record.job?.split(" ")[0]);
      assert.ok(enq >= before && enq <= after, `enq ${enq}`);
      const job: WireJob = {
        id: item.id,
        task: "plain",
        data: JSON.stringify(item.data),
        attempt: 1,
        enq,
      };
      if ("retry" in item) job.retry = JSON.stringify(item.retry);
      if ("timeout" in item) job.timeout = item.timeout;
      const delayed = "delay" in item || "at" in item;
      const written = delayed
        ? JSON.parse((await r.hget(queue.keys.payloads, item.id))!)
        : entries.get(item.id)?.fields;
      const fields = written as string[];
      if (signingKeys) {
        assert.equal(fields.at(-2), "sig");
        job.sig = fields.at(-1)!;
        assert.ok(await new Signer("test", signingKeys).verify(job), `sig of ${item.id}`);
      }
      assert.deepEqual(fields, encodeFields(job), `fields of ${item.id}`);
      const ttl = await r.pttl(queue.keys.job(item.id));
      if (delayed) {
        const due = "delay" in item ? handle.dueAt! : item.at!;
        assert.equal(handle.dueAt, due);
        assert.equal(handle.entryId, undefined);
        assert.deepEqual(record, { state: "delayed", due: String(due), job: `${enq} plain` });
        assert.equal(Number(await r.zscore(queue.keys.delayed, item.id)), due);
        const wait = due - after;
        assert.ok(ttl > RECORD_TTL_MS + wait - 60_000 && ttl <= RECORD_TTL_MS + wait + 60_000);
      } else {
        assert.equal(handle.entryId, entries.get(item.id)!.entryId);
        assert.equal(handle.dueAt, undefined);
        assert.deepEqual(record, { state: "waiting", entry: handle.entryId, job: `${enq} plain` });
        assert.ok(ttl > RECORD_TTL_MS - 60_000 && ttl <= RECORD_TTL_MS, `ttl ${ttl}`);
      }
    }
  }
});

Deno.test("enqueueMany() over several pipelines keeps item order and dedups ids known before or earlier in the call", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("bulk", { redis: redis.url });
  const earlier = await queue.enqueue(plain, "first", { id: "known" });
  const later = await queue.enqueue(plain, "first", { id: "known-later", delay: 60_000 });
  const items = Array.from({ length: 3_500 }, (_, i) => ({ id: `job-${i}`, data: i }));
  items[1_500] = { id: "job-7", data: -1 }; // a later pipeline repeats an id of the first
  items[2_000] = { id: "known", data: -1 };
  items[3_499] = { id: "known-later", data: -1 };
  const handles = await queue.enqueueMany(plain, items);
  assert.deepEqual(handles.map((h) => h.id), items.map((item) => item.id));
  const duplicates = [1_500, 2_000, 3_499];
  assert.deepEqual(handles.flatMap((h, i) => h.duplicate ? [i] : []), duplicates);
  assert.equal(handles[1_500]!.entryId, handles[7]!.entryId);
  assert.equal(handles[2_000]!.entryId, earlier.entryId);
  assert.equal(handles[3_499]!.entryId, undefined);
  assert.equal(handles[3_499]!.dueAt, later.dueAt);
  const entries = await r.xrange(queue.keys.stream, "-", "+");
  const fresh = handles.filter((h) => !h.duplicate);
  assert.deepEqual(entries.map(([entryId]) => entryId), [
    earlier.entryId,
    ...fresh.map((h) => h.entryId),
  ]);
  assert.deepEqual(
    entries.map(([, fields]) => fieldMap(fields).data),
    [
      '"first"',
      ...items.filter((_, i) => !duplicates.includes(i)).map((item) => String(item.data)),
    ],
  );
});

Deno.test("enqueue() throws ValidationError and writes nothing when the schema rejects", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("images", { redis: redis.url });
  await assert.rejects(
    queue.enqueue(resize, { width: 0 }),
    (err: unknown) => {
      assert.ok(err instanceof ValidationError);
      assert.match(err.message, /task resize is invalid at width: width must be a number >= 1/);
      return true;
    },
  );
  assert.equal(await r.xlen(queue.keys.stream), 0);
});

Deno.test("enqueueMany() writes nothing when the last item is invalid", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("images", { redis: redis.url });
  const items = Array.from({ length: 10_000 }, (_, i) => ({ data: { width: i + 1 } }));
  items.push({ data: { width: -1 } });
  await assert.rejects(queue.enqueueMany(resize, items), ValidationError);
  assert.equal(await r.xlen(queue.keys.stream), 0);
  // The queue still works after the rejected batch.
  await queue.enqueue(resize, { width: 1 });
  assert.equal(await r.xlen(queue.keys.stream), 1);
});

Deno.test("enqueueMany() writes nothing when the last item has an invalid id", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("q", { redis: redis.url });
  for (const id of ["", "x".repeat(201)]) {
    await assert.rejects(
      queue.enqueueMany(plain, [{ data: 1 }, { data: 2, id }]),
      (err: unknown) => {
        assert.ok(err instanceof ValidationError);
        assert.match(err.message, /^Cannot enqueue plain: id must be a string of 1 to 200/);
        return true;
      },
    );
  }
  assert.equal(await r.xlen(queue.keys.stream), 0);
});

Deno.test("enqueue() throws ValidationError on data that is not JSON", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("q", { redis: redis.url });
  for (const target of [plain, "plain"] as const) {
    await assert.rejects(
      queue.enqueue(target, { n: 1n }),
      (err: unknown) => {
        assert.ok(err instanceof ValidationError);
        assert.match(err.message, /^Cannot enqueue plain: data is not JSON-serializable/);
        assert.ok(err.cause instanceof TypeError);
        return true;
      },
    );
  }
  await assert.rejects(queue.enqueueMany(plain, [{ data: 1 }, { data: 2n }]), ValidationError);
  assert.equal(await r.xlen(queue.keys.stream), 0);
});

Deno.test("enqueue() throws TypeError on an invalid task name", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  await using queue = new Queue("q", { redis: redis.url });
  await assert.rejects(
    queue.enqueue("bad name", 1),
    (err: unknown) => {
      assert.ok(err instanceof TypeError);
      assert.match(err.message, /^Cannot enqueue: task name must be/);
      return true;
    },
  );
  assert.equal(await r.xlen(queue.keys.stream), 0);
});

Deno.test("enqueue() after close() rejects with an error saying the queue is closed", async () => {
  await using redis = await startRedis();
  await using r = inspect(redis);
  const queue = new Queue("images", { redis: redis.url });
  await queue.enqueue(plain, 1);
  await queue.close();
  await assert.rejects(queue.enqueue(plain, 2), /closed/);
  await assert.rejects(queue.enqueueMany(plain, [{ data: 3 }]), /closed/);
  assert.throws(() => queue.consume(), /closed/);
  assert.equal(await r.xlen(queue.keys.stream), 1);
});

Deno.test("close() is idempotent", async () => {
  await using redis = await startRedis();
  const queue = new Queue("images", { redis: redis.url });
  await queue.enqueue(plain, 1);
  await queue.close();
  await queue.close();
  await Promise.all([queue.close(), queue[Symbol.asyncDispose]()]);
  await assert.rejects(queue.enqueue(plain, 2), /closed/);
});

Deno.test("close() of a queue that never connected resolves", async () => {
  const queue = new Queue("images", { redis: "redis://127.0.0.1:1" });
  await queue.close();
  await queue.close();
  await assert.rejects(queue.enqueue(plain, 1), /closed/);
});

Deno.test("close() waits for an enqueue that is still connecting", async () => {
  await using redis = await startRedis();
  const queue = new Queue("q", { redis: redis.url });
  const pending = queue.enqueue("t", 1, { id: "early" });
  await queue.close();
  const handle = await pending;
  assert.equal(handle.id, "early");
  await using db = inspect(redis);
  assert.equal(await db.xlen(queue.keys.stream), 1);
});

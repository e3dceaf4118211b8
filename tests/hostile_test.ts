/**
 * Entries written by other producers or by an attacker, with a raw XADD: each one that cannot
 * run goes to the dead letters with its own reason, is acked and never run, and the worker
 * goes on.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { type Job, Queue, type StandardSchemaV1, task, Worker } from "../mod.ts";
import { trimText } from "../src/job.ts";
import { startRedis } from "../src/testing.ts";
import { inspect, pendingCount, waitForRedis } from "./_helpers.ts";

type Value = string | Buffer;

/** A valid v1 entry for job `id`, with fields replaced (or removed, with undefined). */
function entry(id: string, overrides: Record<string, Value | undefined> = {}): Value[] {
  const base: Record<string, Value | undefined> = {
    v: "1",
    id,
    task: "echo",
    data: `{"id":${JSON.stringify(id)}}`,
    attempt: "1",
    enq: String(Date.now()),
    ...overrides,
  };
  // A field sluice ignores, to find each entry among the dead letters.
  const fields: Value[] = ["case", id];
  for (const [key, value] of Object.entries(base)) if (value !== undefined) fields.push(key, value);
  return fields;
}

const positive: StandardSchemaV1<unknown, number> = {
  "~standard": {
    version: 1,
    vendor: "test",
    validate: (value) =>
      typeof value === "number" && value > 0
        ? { value }
        : { issues: [{ message: "must be a positive number" }] },
  },
};

/** Runs a worker until job `last` completes and `dead` entries are dead-lettered. */
async function runUntil(
  url: string,
  queue: Queue,
  options: { dead: number; maxPayloadBytes?: number },
) {
  const ran: { id: string; data: unknown }[] = [];
  const warnings: string[] = [];
  const errors: string[] = [];
  const echo = task("echo", (data: unknown, ctx) => {
    ran.push({ id: ctx.job.id, data });
    return data;
  });
  const strict = task("strict", (n: number) => n, { schema: positive });
  const last = Promise.withResolvers<void>();
  const worker = new Worker("q", [echo, strict], {
    redis: url,
    handleSignals: false,
    logger: {
      info() {},
      warn: (m: string) => warnings.push(m),
      error: (m: string, e?: unknown) => errors.push(`${m} ${e}`),
    },
    ...(options.maxPayloadBytes ? { maxPayloadBytes: options.maxPayloadBytes } : {}),
  });
  worker.addEventListener("completed", (e) => {
    if (e.detail.job.id === "last") last.resolve();
  });
  const running = worker.run();
  await last.promise;
  const letters = await waitForRedis(async () => {
    const list = await queue.dead.list();
    return list.length >= options.dead && list;
  }, `${options.dead} dead letters`);
  await worker.stop();
  await running;
  await using db = inspect(url);
  assert.equal(await pendingCount(db, queue.keys.stream), 0, "every entry is acked");
  const reasons = Object.fromEntries(letters.map((l) => [l.fields.case ?? l.id, l.reason]));
  return { ran, warnings, errors, letters, reasons };
}

Deno.test("each kind of hostile entry goes to the dead letters with its own reason, and the worker goes on", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const hostile: Record<string, Value[]> = {
    "no-v": entry("no-v", { v: undefined }),
    "v2": entry("v2", { v: "2" }),
    "no-id": entry("no-id", { id: undefined }),
    "bad-enq": entry("bad-enq", { enq: "yesterday" }),
    "bad-retry": entry("bad-retry", { retry: '{"attempts":0}' }),
    "data-twice": [...entry("data-twice"), "data", "{}"],
    "not-json": entry("not-json", { data: "{nope" }),
    "proto": entry("proto", { data: '{"__proto__":{"polluted":1}}' }),
    "proto-deep": entry("proto-deep", { data: '{"a":[{"\\u005f_proto__":{"polluted":1}}]}' }),
    "bad-bytes": entry("bad-bytes", {
      data: Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0xff, 0x7d]),
    }),
    "bad-name": [...entry("bad-name"), Buffer.from([0x78, 0xc3]), "x"],
    "too-large": entry("too-large", { data: JSON.stringify("x".repeat(200)) }),
    "nobody": entry("nobody", { task: "nobody" }),
    "negative": entry("negative", { task: "strict", data: "-1" }),
  };
  for (const fields of Object.values(hostile)) await db.xadd(queue.keys.stream, "*", ...fields);
  // Plain data that only looks dangerous, a real U+FFFD, and data of exactly the limit run.
  await db.xadd(
    queue.keys.stream,
    "*",
    ...entry("constructor", { data: '{"constructor":{"prototype":{"polluted":1}}}' }),
  );
  await db.xadd(queue.keys.stream, "*", ...entry("replacement", { data: '"\ufffd"' }));
  await db.xadd(
    queue.keys.stream,
    "*",
    ...entry("at-limit", { data: JSON.stringify("é".repeat(99)) }),
  );
  await queue.enqueue("echo", { fine: true }, { id: "last" });

  const { ran, reasons, warnings, errors } = await runUntil(redis.url, queue, {
    dead: Object.keys(hostile).length,
    maxPayloadBytes: 200,
  });
  assert.deepEqual(reasons, {
    "no-v": "malformed",
    "v2": "unknown-version",
    "no-id": "malformed",
    "bad-enq": "malformed",
    "bad-retry": "malformed",
    "data-twice": "malformed",
    "not-json": "bad-json",
    "proto": "bad-json",
    "proto-deep": "bad-json",
    "bad-bytes": "bad-encoding",
    "bad-name": "bad-encoding",
    "too-large": "too-large",
    "nobody": "unknown-task",
    "negative": "invalid-data",
  });
  assert.deepEqual(ran.map((r) => r.id), ["constructor", "replacement", "at-limit", "last"]);
  assert.deepEqual(ran[0]!.data, { constructor: { prototype: { polluted: 1 } } });
  assert.equal(ran[1]!.data, "\ufffd");
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal(Object.prototype.hasOwnProperty.call(Object.prototype, "polluted"), false);
  // Entries that never became jobs are logged once each; unknown-task and invalid-data are
  // reported through the worker's dead event instead.
  assert.equal(warnings.filter((w) => w.includes("went to the dead letters")).length, 12);
  assert.deepEqual(errors, []);
  // The dead letter keeps the original bytes.
  const dead = await db.xrangeBuffer(queue.keys.dead, "-", "+");
  const badBytes = dead.find(([, f]) => f.some((b) => b.toString() === "bad-bytes"))!;
  const data = badBytes[1][badBytes[1].findIndex((b) => b.toString() === "data") + 1]!;
  assert.deepEqual([...data], [0x7b, 0x22, 0x61, 0x22, 0x3a, 0xff, 0x7d]);
});

Deno.test("a buried entry's log line and dead letter name the entry, the reason and the error, never the payload", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  const secret = "SECRET-PAYLOAD";
  await db.xadd(queue.keys.stream, "*", ...entry("cut", { data: `{"token":"${secret}",` }));
  await db.xadd(queue.keys.stream, "*", ...entry("junk", { data: `${secret} ${secret}` }));
  await db.xadd(
    queue.keys.stream,
    "*",
    ...entry("big", { data: JSON.stringify(secret.repeat(20)) }),
  );
  const huge = "9".repeat(100_000);
  await db.xadd(
    queue.keys.stream,
    "*",
    ...entry("long", { timeout: `x${huge}`, data: `"${secret}"` }),
  );
  await queue.enqueue("echo", 1, { id: "last" });
  const { warnings, letters } = await runUntil(redis.url, queue, { dead: 4, maxPayloadBytes: 100 });
  const buried = warnings.filter((w) => w.includes("went to the dead letters"));
  assert.equal(buried.length, 4);
  for (const line of buried) {
    assert.doesNotMatch(line, /SECRET/);
    assert.ok(line.length < 300, `${line.length} characters: ${line.slice(0, 300)}`);
    assert.match(line, /^sluice: queue q: entry \d+-\d+ went to the dead letters \([a-z-]+\): /);
  }
  for (const letter of letters) {
    assert.doesNotMatch(letter.error, /SECRET/, letter.error);
    assert.ok(letter.error.length < 300);
  }
  const byCase = Object.fromEntries(letters.map((l) => [l.fields.case, l.error]));
  assert.equal(byCase.cut, "field data is not JSON (at position 26)");
  assert.equal(byCase.junk, "field data is not JSON");
  assert.equal(byCase.big, "field data is 282 bytes, over maxPayloadBytes 100");
  assert.match(byCase.long!, /^field timeout must be an integer >= 1 \(ms\), got "x9{63}…"$/);
});

Deno.test("trimText() keeps at most 4,096 characters of error text", () => {
  assert.equal(trimText("short"), "short");
  assert.equal(trimText("x".repeat(4_096)), "x".repeat(4_096));
  assert.equal(trimText("x".repeat(100_000)), `${"x".repeat(4_096)}…`);
});

Deno.test("hostile entries reclaimed from a dead consumer are dead-lettered all the same", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, logger: { warn() {}, error() {} } });
  await using db = inspect(redis.url);
  await db.xgroup("CREATE", queue.keys.stream, "sluice", "0", "MKSTREAM");
  await db.xadd(queue.keys.stream, "*", ...entry("bad-bytes", { data: Buffer.from([0xff]) }));
  await db.xadd(queue.keys.stream, "*", ...entry("proto", { data: '{"__proto__":1}' }));
  await db.xadd(queue.keys.stream, "*", ...entry("good"));
  // A ghost reads all three and dies holding them.
  await db.xreadgroup("GROUP", "sluice", "ghost", "COUNT", 3, "STREAMS", queue.keys.stream, ">");
  const controller = new AbortController();
  const seen: Job[] = [];
  for await (const job of queue.consume({ signal: controller.signal, idleTimeout: 200 })) {
    seen.push(job);
    await job.ack();
    controller.abort();
  }
  assert.deepEqual(seen.map((j) => [j.id, j.deliveries]), [["good", 2]]);
  const letters = await waitForRedis(async () => {
    const list = await queue.dead.list();
    return list.length === 2 && list;
  }, "two dead letters");
  assert.deepEqual(
    letters.map((l) => [l.fields.case, l.reason]),
    [["bad-bytes", "bad-encoding"], ["proto", "bad-json"]],
  );
  assert.equal(await pendingCount(db, queue.keys.stream), 0);
});

Deno.test("a too-large or bad-json entry with a valid id marks that job dead, so result() settles", async () => {
  await using redis = await startRedis();
  await using producer = new Queue("q", { redis: redis.url });
  const handle = await producer.enqueue("echo", "x".repeat(300), { id: "big" });
  const result = handle.result().then(() => "resolved", (err: Error) => err.message);
  await producer.enqueue("echo", 1, { id: "last" });
  await using queue = new Queue("q", { redis: redis.url });
  await runUntil(redis.url, queue, { dead: 1, maxPayloadBytes: 100 });
  assert.match(await result, /302 bytes, over maxPayloadBytes 100/);
  assert.equal((await producer.job("big").info())?.state, "dead");
});

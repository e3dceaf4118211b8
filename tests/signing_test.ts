import assert from "node:assert/strict";
import { type Job, Queue, task, Worker, type WorkerEventDetail } from "../mod.ts";
import { decodeFields, isFailure } from "../src/codec.ts";
import { Signer } from "../src/sign.ts";
import { startRedis } from "../src/testing.ts";
import { inspect, pendingCount, waitForRedis, waitUntil } from "./_helpers.ts";

const quiet = { info() {}, warn() {}, error() {} };
const OLD = "old-key-0123456789abcdef0123456789";
const NEW = "new-key-0123456789abcdef0123456789";

/** Waits for a worker event that `match` accepts, failing after `timeout` ms. */
function event<K extends keyof WorkerEventDetail>(
  worker: Worker,
  type: K,
  match: (detail: WorkerEventDetail[K]) => boolean,
  timeout = 20_000,
): Promise<WorkerEventDetail[K]> {
  let found: WorkerEventDetail[K] | undefined;
  return waitUntil(
    () => found,
    (wake) => {
      const listener = (e: CustomEvent<WorkerEventDetail[K]>) => {
        if (found === undefined && match(e.detail)) found = e.detail;
        wake();
      };
      worker.addEventListener(type, listener);
      return () => worker.removeEventListener(type, listener as EventListener);
    },
    timeout,
    () => `a ${type} event`,
  );
}

/** The dead letters' reasons by job id (or entry placeholder), once there are `n`. */
async function deadReasons(url: string, queue: Queue, n: number): Promise<Map<string, string>> {
  await using db = inspect(url);
  const letters = await waitForRedis(async () => {
    const list = await queue.dead.list();
    return list.length >= n && list;
  }, `${n} dead letters`);
  assert.equal(letters.length, n);
  assert.equal(await pendingCount(db, queue.keys.stream), 0, "dead letters are acked");
  return new Map(letters.map((l) => [l.id, l.reason]));
}

/** The fields of the stream entry of job `id`, as a flat list. */
async function entryOf(url: string, queue: Queue, id: string): Promise<string[]> {
  await using db = inspect(url);
  const entries = await db.xrange(queue.keys.stream, "-", "+");
  const entry = entries.find(([, f]) => f[f.indexOf("id") + 1] === id);
  assert.ok(entry, `entry of ${id}`);
  return entry[1];
}

/** `fields` with field `name` set to `value` (or removed, if undefined). */
function withField(fields: string[], name: string, value: string | undefined): string[] {
  const out: string[] = [];
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] !== name) out.push(fields[i]!, fields[i + 1]!);
    else if (value !== undefined) out.push(name, value);
  }
  return out;
}

Deno.test("new Queue() rejects bad signingKeys with a TypeError naming the action, the rule and the value, never the key", () => {
  const rule = "signingKeys must be a non-empty array of non-empty strings or Uint8Arrays";
  const cases: [unknown, string][] = [
    [[], "got []"],
    [[""], 'got "" at index 0'],
    [[NEW, new Uint8Array()], "got an empty Uint8Array at index 1"],
    [[NEW, 1234567], "got a number at index 1"],
    [[new ArrayBuffer(8)], "got an object (ArrayBuffer) at index 0"],
    [NEW, "got a string"],
    [null, "got null"],
  ];
  for (const [keys, got] of cases) {
    assert.throws(
      () => new Queue("q", { signingKeys: keys as string[] }),
      (err: Error) => {
        assert.ok(err instanceof TypeError, String(err));
        assert.equal(err.message, `Cannot create queue: ${rule}, ${got}`);
        assert.ok(!err.message.includes("0123456789"), "the key is not shown");
        return true;
      },
    );
  }
  assert.throws(
    () => new Worker("q", [task("t", () => {})], { signingKeys: [] }),
    /Cannot create queue: signingKeys must be/,
  );
});

Deno.test("a signing queue writes sig; a worker with the key runs enqueued, batched, delayed and retried jobs", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, signingKeys: [NEW] });
  const ran: string[] = [];
  const flaky = task("flaky", (n: number, ctx) => {
    ran.push(`${ctx.job.id}@${ctx.job.attempt}`);
    if (ctx.job.attempt === 1 && n > 0) throw new Error("once more");
    return n;
  }, { retry: { attempts: 2, backoff: { type: "fixed", delay: 0 } } });
  await queue.enqueue(flaky, 0, { id: "one" });
  const fields = await entryOf(redis.url, queue, "one");
  const decoded = decodeFields(fields);
  assert.ok(!isFailure(decoded));
  assert.match(decoded.sig ?? "", /^[A-Za-z0-9_-]{43}$/);
  assert.equal(decoded.sig, await new Signer("test", [NEW]).sign(decoded));
  await queue.enqueueMany(flaky, [{ id: "many-1", data: 0 }, { id: "many-2", data: 0 }]);
  await queue.enqueue(flaky, 0, { id: "later", delay: 50 });
  await queue.enqueue(flaky, 1, { id: "again" }); // retried at once: attempt bumped in Lua
  await queue.enqueue(flaky, 1, {
    id: "again-later",
    retry: { attempts: 2, backoff: { type: "fixed", delay: 20 } },
  });
  const worker = new Worker("q", [flaky], {
    redis: redis.url,
    handleSignals: false,
    logger: quiet,
    signingKeys: [NEW],
    concurrency: 4,
  });
  const completed = new Set<string>();
  const all = event(worker, "completed", ({ job }) => {
    completed.add(job.id);
    return completed.size === 6;
  });
  const running = worker.run();
  await all;
  await worker.stop();
  await running;
  assert.deepEqual(
    [...completed].sort(),
    ["again", "again-later", "later", "many-1", "many-2", "one"],
  );
  assert.ok(ran.includes("again@2") && ran.includes("again-later@2"), ran.join());
  assert.equal(await queue.dead.count(), 0);
});

Deno.test("a worker with signing keys dead-letters unsigned, forged and tampered entries as bad-signature and runs the rest", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url, signingKeys: [NEW] });
  await using db = inspect(redis.url);
  const ran: string[] = [];
  const echo = task("echo", (data: unknown, ctx) => {
    ran.push(ctx.job.id);
    return data;
  });
  await queue.enqueue(echo, { n: 1 }, { id: "signed" });
  const signed = await entryOf(redis.url, queue, "signed");
  await db.xadd(
    queue.keys.stream,
    "*",
    ...withField(withField(signed, "id", "unsigned"), "sig", undefined),
  );
  await db.xadd(
    queue.keys.stream,
    "*",
    ...withField(withField(signed, "id", "forged"), "sig", "A".repeat(43)),
  );
  await db.xadd(
    queue.keys.stream,
    "*",
    ...withField(withField(signed, "id", "garbled"), "sig", "not base64!"),
  );
  // Same id and signature, other data: the signature no longer matches.
  await db.xadd(queue.keys.stream, "*", ...withField(signed, "data", '{"n":2}'));
  // Only attempt changed: not covered, still runs.
  await db.xadd(
    queue.keys.stream,
    "*",
    ...withField(withField(signed, "attempt", "2"), "id", "signed"),
  );
  await using other = new Queue("q", { redis: redis.url, signingKeys: [OLD] });
  await other.enqueue(echo, { n: 3 }, { id: "other-key" });
  await queue.enqueue(echo, { n: 4 }, { id: "last" });

  const warnings: string[] = [];
  const worker = new Worker("q", [echo], {
    redis: redis.url,
    handleSignals: false,
    logger: { ...quiet, warn: (m: string) => warnings.push(m) },
    signingKeys: [NEW],
  });
  const last = event(worker, "completed", ({ job }) => job.id === "last");
  const running = worker.run();
  await last;
  const reasons = await deadReasons(redis.url, queue, 5);
  await worker.stop();
  await running;
  assert.deepEqual([...reasons.values()], Array(5).fill("bad-signature"));
  assert.deepEqual(
    [...reasons.keys()].sort(),
    ["forged", "garbled", "other-key", "signed", "unsigned"],
  );
  assert.deepEqual(ran, ["signed", "signed", "last"], "the signed entry and its attempt-2 copy");
  const letters = await queue.dead.list();
  assert.match(letters.find((l) => l.id === "unsigned")!.error, /not signed/);
  assert.match(letters.find((l) => l.id === "forged")!.error, /does not match/);
  assert.equal(warnings.filter((w) => w.includes("(bad-signature)")).length, 5);
  // An unauthenticated entry never touches the record of the job it names.
  assert.equal((await queue.job("other-key").info())?.state, "waiting");
});

Deno.test("key rotation: the old key verifies while listed second, and its entries go to bad-signature once dropped", async () => {
  await using redis = await startRedis();
  await using before = new Queue("q", { redis: redis.url, signingKeys: [OLD] });
  const ran: string[] = [];
  const work = task("work", (_: unknown, ctx) => void ran.push(ctx.job.id));
  await before.enqueueMany(work, [{ id: "old-1", data: 1 }, { id: "old-2", data: 2 }]);
  await using after = new Queue("q", { redis: redis.url, signingKeys: [NEW, OLD] });
  await after.enqueue(work, 3, { id: "new-1" });

  // Mid-rotation: new key first, old one second. Both kinds run.
  const rotating = new Worker("q", [work], {
    redis: redis.url,
    handleSignals: false,
    logger: quiet,
    signingKeys: [NEW, OLD],
  });
  const done = new Set<string>();
  const three = event(rotating, "completed", ({ job }) => done.add(job.id).size === 3);
  const first = rotating.run();
  await three;
  await rotating.stop();
  await first;
  assert.deepEqual(ran.sort(), ["new-1", "old-1", "old-2"]);

  // The old key dropped: what it signed no longer runs.
  await before.enqueue(work, 4, { id: "old-3" });
  await after.enqueue(work, 5, { id: "new-2" });
  const rotated = new Worker("q", [work], {
    redis: redis.url,
    handleSignals: false,
    logger: quiet,
    signingKeys: [NEW],
  });
  const newer = event(rotated, "completed", ({ job }) => job.id === "new-2");
  const second = rotated.run();
  await newer;
  const reasons = await deadReasons(redis.url, after, 1);
  await rotated.stop();
  await second;
  assert.deepEqual([...reasons], [["old-3", "bad-signature"]]);
  assert.ok(!ran.includes("old-3"));
});

Deno.test("without signing keys, a worker runs entries whatever their sig field holds", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  await queue.enqueue("t", 1, { id: "plain" });
  const fields = await entryOf(redis.url, queue, "plain");
  await db.xadd(queue.keys.stream, "*", ...withField(fields, "id", "bogus-sig"), "sig", "nonsense");
  const controller = new AbortController();
  const seen: Job[] = [];
  for await (const job of queue.consume({ signal: controller.signal })) {
    seen.push(job);
    await job.ack();
    if (seen.length === 2) controller.abort();
  }
  assert.deepEqual(seen.map((j) => j.id), ["plain", "bogus-sig"]);
});

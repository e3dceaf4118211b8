/**
 * Completion webhooks: a job's end enqueues a delivery in the same script; workers POST it to
 * a real local HTTP server, retry on 5xx, sign the body, and refuse a URL its job's signature
 * does not cover.
 */
import assert from "node:assert/strict";
import { NonRetryableError, Queue, task, Worker } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { inspect } from "./_helpers.ts";

const quiet = { warn() {}, error() {} };
const KEY = "a long random secret for the webhook test";

/** A local receiver: answers each POST with the next status of `statuses` (then the last). */
function receiver(statuses: number[]) {
  const calls: { headers: Headers; body: string }[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
    calls.push({ headers: req.headers, body: await req.text() });
    for (const w of waiters) if (calls.length >= w.n) w.resolve();
    return new Response(null, { status: statuses[calls.length - 1] ?? statuses.at(-1)! });
  });
  return {
    calls,
    url: `http://127.0.0.1:${server.addr.port}/hook`,
    /** Resolves once `n` calls came in. */
    reached(n: number): Promise<void> {
      if (calls.length >= n) return Promise.resolve();
      const { promise, resolve } = Promise.withResolvers<void>();
      waiters.push({ n, resolve });
      return promise;
    },
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

async function hmacHex(text: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(KEY),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(
    await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(text)),
  );
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
}

const fast = { retry: { attempts: 5, backoff: { type: "fixed" as const, delay: 20 } } };

Deno.test("a webhook that answers 500 twice is delivered on attempt 3, signed, with the job's outcome", async () => {
  await using redis = await startRedis();
  await using hook = receiver([500, 500, 200]);
  const options = { redis: redis.url, signingKeys: [KEY] };
  await using queue = new Queue("q", options);
  const handle = await queue.enqueue("resize", { w: 10 }, { webhook: hook.url });
  const worker = new Worker("q", [task("resize", (d: { w: number }) => ({ w: d.w * 2 }))], {
    ...options,
    handleSignals: false,
    logger: quiet,
    webhooks: fast,
  });
  const run = worker.run();
  assert.deepEqual(await handle.result(), { w: 20 });
  await hook.reached(3);
  await worker.stop();
  await run;
  assert.equal(hook.calls.length, 3);
  const last = hook.calls[2]!;
  const body = JSON.parse(last.body);
  assert.equal(body.id, handle.id);
  assert.equal(body.task, "resize");
  assert.equal(body.state, "completed");
  assert.deepEqual(body.result, { w: 20 });
  assert.ok(Math.abs(body.finishedAt - Date.now()) < 60_000);
  assert.equal(last.headers.get("content-type"), "application/json");
  assert.equal(last.headers.get("sluice-job-id"), handle.id);
  assert.match(last.headers.get("sluice-delivery")!, / 3$/, "the third attempt");
  const [, t, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(last.headers.get("sluice-signature")!)!;
  assert.equal(v1, await hmacHex(`${t}.${last.body}`));
  assert.ok(Math.abs(Number(t) - Date.now()) < 60_000);
  // The first two calls carried the same body.
  assert.equal(hook.calls[0]!.body, last.body);
});

Deno.test("dead and cancelled jobs are reported too; a 4xx is not tried again", async () => {
  await using redis = await startRedis();
  await using hook = receiver([200]);
  await using gone = receiver([404]);
  await using queue = new Queue("q", { redis: redis.url });
  const dead = await queue.enqueue("fail", null, { webhook: hook.url });
  const cancelled = await queue.enqueue("fail", null, { webhook: hook.url, delay: 600_000 });
  assert.deepEqual(await cancelled.cancel(), { cancelled: true, state: "delayed" });
  const lost = await queue.enqueue("ok", null, { webhook: gone.url });
  const worker = new Worker("q", [
    task("fail", () => {
      throw new NonRetryableError("no <way>");
    }),
    task("ok", () => 1),
  ], { redis: redis.url, handleSignals: false, logger: quiet, webhooks: fast });
  const deadLetters: string[] = [];
  const bothDead = Promise.withResolvers<void>();
  worker.addEventListener("dead", (e) => {
    if (deadLetters.push(e.detail.job.task) === 2) bothDead.resolve();
  });
  const run = worker.run();
  await hook.reached(2);
  await gone.reached(1);
  await lost.result();
  await bothDead.promise;
  await worker.stop();
  await run;
  const bodies = hook.calls.map((c) => JSON.parse(c.body));
  const byId = Object.fromEntries(bodies.map((b) => [b.id, b]));
  assert.equal(byId[dead.id].state, "dead");
  assert.equal(byId[dead.id].error, "NonRetryableError: no <way>", "its first line, no stack");
  assert.equal(byId[dead.id].reason, "non-retryable");
  assert.equal(byId[cancelled.id].state, "cancelled");
  assert.equal(hook.calls[0]!.headers.get("sluice-signature"), null, "no keys: not signed");
  // The 404 went to the dead letters at once, with what the receiver answered.
  assert.equal(gone.calls.length, 1);
  assert.deepEqual(deadLetters.sort(), ["fail", "sluice.webhook"]);
  const [letter] = (await queue.dead.list()).filter((l) => l.task === "sluice.webhook");
  assert.match(letter!.error, /answered 404/);
});

Deno.test("a delivery forged in Redis for a URL its job's signature does not cover is never POSTed", async () => {
  await using redis = await startRedis();
  await using hook = receiver([200]);
  await using db = inspect(redis.url);
  const options = { redis: redis.url, signingKeys: [KEY] };
  await using queue = new Queue("q", options);
  const real = await queue.enqueue("t", null, { webhook: "https://example.com/mine", delay: 1e9 });
  const fields = JSON.parse((await db.hget(queue.keys.payloads, real.id))!) as string[];
  assert.ok(fields.includes("sig"));
  // The job's signed fields, with the URL swapped: what an attacker with Redis could write.
  const forged = fields.map((v, i) => fields[i - 1] === "webhook" ? hook.url : v);
  const data = JSON.stringify({ url: hook.url, body: "{}", job: forged });
  await db.xgroup("CREATE", queue.keys.stream, "sluice", "0", "MKSTREAM");
  await db.xadd(
    queue.keys.stream,
    "*",
    ...["v", "1", "id", "webhook:w1", "task", "sluice.webhook", "data", data, "attempt", "1"],
    ...["enq", String(Date.now())],
  );
  const worker = new Worker("q", [task("t", () => {})], {
    ...options,
    handleSignals: false,
    logger: quiet,
  });
  const dead = Promise.withResolvers<string>();
  worker.addEventListener("dead", (e) => dead.resolve(String(e.detail.error)));
  const run = worker.run();
  assert.match(await dead.promise, /signature does not cover it/);
  await worker.stop();
  await run;
  assert.equal(hook.calls.length, 0);
});

Deno.test("webhook options: every edge refused with its name and value", async () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ webhooks: 5 }, /webhooks must be an object, got 5/],
    [{ webhooks: { tries: 1 } }, /webhooks has no option "tries"/],
    [{ webhooks: { timeout: 0 } }, /webhooks.timeout must be an integer from 1 to 600000, got 0/],
    [{ webhooks: { timeout: 600_001 } }, /got 600001/],
    [{ webhooks: { retry: { attempts: 0 } } }, /attempts/],
  ];
  for (const [options, message] of bad) {
    assert.throws(() => new Worker("q", [task("t", () => {})], options), message);
  }
  assert.throws(
    () => new Worker("q", [task("sluice.webhook", () => {})]),
    /task name sluice.webhook is reserved/,
  );
  const queue = new Queue("q", { redis: "redis://127.0.0.1:1" });
  await assert.rejects(
    () => queue.enqueue("sluice.webhook", null),
    /Cannot enqueue: task name sluice.webhook is reserved/,
  );
  for (const url of ["ftp://x.example", "not a url", `https://x.example/${"a".repeat(2_048)}`, 5]) {
    await assert.rejects(
      () => queue.enqueue("t", null, { webhook: url as string }),
      /webhook must be an http: or https: URL of at most 2,048 characters, got/,
    );
  }
});

Deno.test("an entry whose data is not JSON is dead-lettered as bad-json, and its webhook told so", async () => {
  await using redis = await startRedis();
  await using hook = receiver([200]);
  await using db = inspect(redis.url);
  await using queue = new Queue("q", { redis: redis.url });
  await db.xgroup("CREATE", queue.keys.stream, "sluice", "0", "MKSTREAM");
  await db.xadd(
    queue.keys.stream,
    "*",
    ...["v", "1", "id", "j1", "task", "t", "data", "{not json", "attempt", "1"],
    ...["enq", String(Date.now()), "webhook", hook.url],
  );
  const worker = new Worker("q", [task("t", () => {})], {
    redis: redis.url,
    handleSignals: false,
    logger: quiet,
    webhooks: fast,
  });
  const run = worker.run();
  await hook.reached(1);
  await worker.stop();
  await run;
  const body = JSON.parse(hook.calls[0]!.body);
  assert.equal(body.id, "j1");
  assert.equal(body.task, "t");
  assert.equal(body.state, "dead");
  assert.equal(body.reason, "bad-json");
});

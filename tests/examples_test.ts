/** The examples and the demo, run as a user would run them. */
import assert from "node:assert/strict";
import { startRedis } from "../src/testing.ts";
import { inspect, waitForRedis } from "./_helpers.ts";

const root = new URL("../", import.meta.url).pathname;

async function run(args: string[], env: Record<string, string> = {}, signal?: AbortSignal) {
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    ...(signal === undefined ? {} : { signal }),
  }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  return { code: output.code, text };
}

Deno.test("the demo starts its own redis-server, runs every job, and exits 0", async () => {
  const env = Deno.env.toObject();
  delete env.REDIS_URL;
  const { code, text } = await run(["run", "-A", "examples/demo.ts"], { ...env, DEMO_JOBS: "600" });
  assert.equal(code, 0, text);
  assert.match(text, /started a throwaway redis-server/);
  const summary = text.match(/summary: 600 jobs .*: (\d+) completed, (\d+) retries, (\d+) dead/);
  assert.ok(summary, text);
  const [completed, retries, dead] = summary.slice(1).map(Number) as [number, number, number];
  assert.equal(completed + dead, 600);
  assert.ok(dead >= 1 && retries >= 1, "the demo shows retries and a dead letter");
});

Deno.test("examples/for_await.ts squares five numbers and ends", async () => {
  await using redis = await startRedis();
  const { code, text } = await run(["run", "-A", "examples/for_await.ts"], {
    REDIS_URL: redis.url,
  });
  assert.equal(code, 0, text);
  for (const n of [1, 2, 3, 4, 5]) assert.match(text, new RegExp(`square\\(${n}\\) = ${n * n}`));
});

Deno.test("examples/worker.ts runs what examples/producer.ts enqueues, and stops on SIGINT with 0", async () => {
  await using redis = await startRedis();
  const env = { NO_COLOR: "1", REDIS_URL: redis.url };
  const worker = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "examples/worker.ts"],
    cwd: root,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = worker.output();
  const produced = await run(["run", "-A", "examples/producer.ts"], env);
  assert.equal(produced.code, 0, produced.text);
  assert.match(produced.text, /enqueued 102 jobs/);
  await using db = inspect(redis.url);
  // Some jobs fail once and come back after a backoff: wait for the delayed set too.
  await waitForRedis(async () => {
    const [waiting, delayed] = await Promise.all([
      db.xlen("sluice:{demo}:stream"),
      db.zcard("sluice:{demo}:delayed"),
    ]);
    return waiting === 0 && delayed === 0;
  }, "all done");
  worker.kill("SIGINT");
  const { code, stdout } = await output;
  const text = new TextDecoder().decode(stdout);
  assert.equal(code, 0, text);
  assert.match(text, /stopped after 102 jobs/);
});

Deno.test("the lifecycle examples run on their own throwaway Redis and print what they promise", async () => {
  const env = Deno.env.toObject();
  delete env.REDIS_URL;
  const expected: Record<string, RegExp[]> = {
    retries: [/retrying in 100 ms/, /retrying in 200 ms/, /ok on attempt 3/],
    delayed: [/: delayed/, /stand up \(ran at/],
    results: [/result 144/, /state completed/, /duplicate=true/],
    cancel: [
      /delayed: .*cancelled: true/,
      /running: .*state: "active"/,
      /rejected with CancelledError/,
    ],
    pause: [/paused: true, waiting: 20, completed: 0/, /resumed: yes, completed: 20/],
    rate_limits: [
      /429 for c@example\.com, pausing email for 300 ms/,
      /sent to c@example\.com \(attempt 1\)/,
      /12 emails in \d+ ms/,
    ],
    groups: [
      /globex's 9 jobs all started within \d+ starts of their enqueue/,
      /at most 2 jobs of one tenant ran at once/,
    ],
    tenants: [
      /acme sees its job: waiting/,
      /globex sees: undefined/,
      /globex cancels: \{ cancelled: false, state: "unknown" \}/,
      /a scoped producer enqueues in its own group only/,
      /acme cancels: \{ cancelled: true, state: "waiting" \}/,
    ],
  };
  for (const [name, patterns] of Object.entries(expected)) {
    const { code, text } = await run(["run", "-A", `examples/${name}.ts`], env);
    assert.equal(code, 0, `${name}: ${text}`);
    for (const pattern of patterns) assert.match(text, pattern, `${name}: ${text}`);
  }
});

Deno.test("examples/observability.ts serves its metrics and scrapes them", async () => {
  const env = Deno.env.toObject();
  delete env.REDIS_URL;
  const { code, text } = await run(
    ["run", "-A", "examples/observability.ts", "--port", "0", "--seconds", "0.1"],
    env,
  );
  assert.equal(code, 0, text);
  assert.match(text, /^metrics on http:\/\/127\.0\.0\.1:\d+\/metrics$/m);
  assert.match(text, /^sluice_jobs_completed_total\{queue="media",task="resize"\} 36$/m);
  assert.match(text, /reason="non-retryable"\} 4$/m);
  assert.match(text, /^sluice_queue_jobs\{queue="media",state="dead"\} 4$/m);
  assert.match(text, /in code: 36 completed, 4 dead, 40 runs of [\d.]+ ms on average/);
  assert.match(text, /^events: waiting 40, active 40, completed 36, dead 4$/m);
});

Deno.test("examples/cluster.ts keeps working through the kill of the queue's master", async () => {
  const { code, text } = await run(["run", "-A", "examples/cluster.ts"]);
  assert.equal(code, 0, text);
  const owner = text.match(/lives on slot \d+, master 127\.0\.0\.1:(\d+)/)?.[1];
  const now = text.match(/400 of 400 jobs done, the queue now on 127\.0\.0\.1:(\d+)/)?.[1];
  assert.ok(owner && now, text);
  assert.notEqual(now, owner, "a replica took over the queue's slot");
});

Deno.test("examples/schedules.ts runs five ticks of its two schedules and ends", async () => {
  await using redis = await startRedis();
  const { code, text } = await run(["run", "-A", "examples/schedules.ts"], {
    REDIS_URL: redis.url,
  });
  assert.equal(code, 0, text);
  assert.match(text, /heartbeat@\d+000: beat from cron/);
  assert.match(text, /ping:example: every 700 ms, next /);
  assert.ok((text.match(/@\d+: /g)?.length ?? 0) >= 5, text);
});

Deno.test("examples/priorities.ts starts the urgent jobs first, then normal, then bulk", async () => {
  await using redis = await startRedis();
  // On the test's Redis, so that a hang (killed at the deadline) leaves no server behind.
  const { code, text } = await run(
    ["run", "-A", "examples/priorities.ts"],
    { REDIS_URL: redis.url },
    AbortSignal.timeout(60_000),
  );
  assert.equal(code, 0, text);
  assert.match(text, /waiting: 6/);
  assert.match(
    text,
    /order: password-reset \(urgent\), login-code \(urgent\), digest \(normal\), newsletter-1 \(bulk\), newsletter-2 \(bulk\), newsletter-3 \(bulk\)/,
  );
});

/**
 * The CLI, run as a subprocess against a real Redis: its --json output, exit codes, help,
 * confirmation, and `watch` redrawing in place under a pseudo-terminal (util-linux `script`).
 */
import assert from "node:assert/strict";
import { Queue, task, Worker } from "../mod.ts";
import { startRedis } from "../src/testing.ts";

/** The escape character, which terminal sequences start with. */
const ESC = String.fromCharCode(27);
const CLEAR = `${ESC}[H${ESC}[2J`;

const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON (undefined if it is not). */
  json: unknown;
}

/** Runs the CLI with these arguments against `url` (no terminal). */
async function cli(url: string, ...args: string[]): Promise<Run> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args, "--redis", url],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    json = undefined;
  }
  return { code: out.code, stdout, stderr: new TextDecoder().decode(out.stderr), json };
}

Deno.test("CLI: enqueue, queues, stats, jobs, job, cancel and pause with --json and exit codes", async () => {
  await using redis = await startRedis();
  const url = redis.url;
  const enq = await cli(
    url,
    "enqueue",
    "mail",
    "welcome",
    '{"to":"a@example.com"}',
    "--id",
    "w1",
    "--json",
  );
  assert.equal(enq.code, 0, enq.stderr);
  assert.deepEqual(enq.json, { id: "w1", duplicate: false, dueAt: null });
  const later = await cli(url, "enqueue", "mail", "welcome", "{}", "--delay", "1h", "--json");
  assert.equal(later.code, 0, later.stderr);
  const [queues, stats, jobs, job, delayed] = await Promise.all([
    cli(url, "queues", "--json"),
    cli(url, "stats", "mail", "--json"),
    cli(url, "jobs", "mail", "waiting", "--json"),
    cli(url, "job", "mail", "w1", "--json"),
    cli(url, "jobs", "mail", "delayed", "--json"),
  ]);
  assert.deepEqual((queues.json as { name: string }[]).map((q) => q.name), ["mail"]);
  const s = (stats.json as { stats: Record<string, number> }).stats;
  assert.deepEqual([s.waiting, s.delayed, s.dead], [1, 1, 0]);
  const page = jobs.json as { jobs: { id: string; data: string }[]; cursor?: string };
  assert.deepEqual(page.jobs.map((j) => [j.id, j.data]), [["w1", '{"to":"a@example.com"}']]);
  const details = job.json as { status: { state: string }; data: string; timeline: unknown[] };
  assert.equal(details.status.state, "waiting");
  assert.equal(details.data, '{"to":"a@example.com"}');
  assert.ok(details.timeline.length >= 1);
  const dueAt = (later.json as { dueAt: number }).dueAt;
  assert.equal((delayed.json as { jobs: { dueAt: number }[] }).jobs[0]?.dueAt, dueAt);

  // Human output is a table; a job not found is exit 1; a bad state is exit 2 with usage.
  const table = await cli(url, "jobs", "mail", "waiting");
  assert.match(table.stdout, /^ID\s+TASK\s+GROUP/);
  assert.match(table.stdout, /w1\s+welcome/);
  const missing = await cli(url, "job", "mail", "nope", "--json");
  assert.equal(missing.code, 1);
  const bad = await cli(url, "jobs", "mail", "sleeping");
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /the state must be one of waiting, active/);
  assert.match(bad.stderr, /sluice jobs <queue> <state>/);

  const cancel = await cli(url, "cancel", "mail", "w1", "--json");
  assert.deepEqual(cancel.json, { cancelled: true, state: "waiting" });
  assert.equal((await cli(url, "cancel", "mail", "w1", "--json")).json !== undefined, true);
  await using queue = new Queue("mail", { redis: url });
  await queue.schedules.upsert("daily", { every: 86_400_000, task: "digest", data: null });
  const [schedules, workers] = await Promise.all([
    cli(url, "schedules", "mail", "--json"),
    cli(url, "workers", "mail", "--json"),
  ]);
  assert.deepEqual((schedules.json as { id: string; task: string }[]).map((s) => [s.id, s.task]), [
    ["daily", "digest"],
  ]);
  assert.deepEqual(workers.json, []);
  assert.match((await cli(url, "schedules", "mail")).stdout, /^SCHEDULE\s+TASK\s+EVERY/);
  const pause = await cli(url, "pause", "mail", "--json");
  assert.deepEqual(pause.json, { changed: true, paused: true });
  assert.equal((await cli(url, "stats", "mail")).stdout.includes("paused"), true);
  assert.deepEqual((await cli(url, "resume", "mail", "--json")).json, {
    changed: true,
    paused: false,
  });
});

Deno.test("CLI: retry, drain, clean and obliterate report counts; usage errors exit 2", async () => {
  await using redis = await startRedis();
  const url = redis.url;
  await using queue = new Queue("q", { redis: url });
  const bad = task("bad", () => {
    throw new Error("boom");
  }, { retry: { attempts: 1 } });
  await queue.enqueueMany("bad", [1, 2, 3].map((n) => ({ data: n, id: `bad-${n}` })));
  {
    await using worker = new Worker("q", [bad], { redis: url, handleSignals: false });
    let dead = 0;
    const { promise, resolve } = Promise.withResolvers<void>();
    worker.addEventListener("dead", () => ++dead === 3 && resolve());
    const run = worker.run();
    await promise;
    await worker.stop();
    await run;
  }
  const dead = await cli(url, "jobs", "q", "dead", "--json");
  assert.deepEqual(
    (dead.json as { jobs: { id: string; reason: string }[] }).jobs.map((j) => j.reason),
    ["failed", "failed", "failed"],
  );
  const one = await cli(url, "retry", "q", "bad-2", "--json");
  assert.deepEqual(one.json, { retried: 1 });
  const none = await cli(url, "retry", "q", "bad-2", "--json");
  assert.equal(none.code, 1);
  const rest = await cli(url, "retry", "q", "--dead", "--task", "bad", "--json");
  assert.deepEqual(rest.json, { retried: 2 });
  await queue.enqueue("t", 1, { delay: 3_600_000 });
  const drained = await cli(url, "drain", "q", "--json");
  assert.deepEqual(drained.json, { waiting: 3, delayed: 1 });
  const cleaned = await cli(url, "clean", "q", "cancelled", "--older-than", "0", "--json");
  assert.deepEqual(cleaned.json, { deleted: 4 });
  const gone = await cli(url, "obliterate", "q", "--json");
  assert.equal(gone.code, 0);
  assert.deepEqual((await cli(url, "queues", "--json")).json, []);

  const usage: [string[], RegExp][] = [
    [["retry", "q"], /give a job id, or --dead/],
    [["clean", "q", "dead"], /--older-than is required/],
    [["clean", "q", "dead", "--older-than", "soon"], /--older-than must be a duration/],
    [["jobs", "q", "dead", "--limit", "0"], /--limit must be a whole number from 1 to 1000/],
    [["enqueue", "q", "t", "{oops"], /the data must be JSON/],
    [["stats"], /stats takes 1 argument/],
    [["stats", "q", "--bogus"], /Unknown option '--bogus'/],
    [["frobnicate"], /unknown command "frobnicate"/],
    [["stats", "bad{name}"], /queue name must be/],
    [["watch", "q", "--interval", "5ms"], /--interval must be from 100ms to 1h/],
  ];
  for (const [args, message] of usage) {
    const run = await cli(url, ...args);
    assert.equal(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
    assert.match(run.stderr, message);
  }
  const help = await cli(url, "drain", "--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /sluice drain <queue>/);
  const unreachable = await cli("redis://127.0.0.1:1", "queues", "--json");
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, /Cannot reach Redis at redis:\/\/127.0.0.1:1/);
});

/** Runs the CLI under a pseudo-terminal, reading its output until `until` holds. */
async function underPty(
  args: string[],
  until: (output: string) => boolean,
  answer?: string,
  timeout = 30_000,
): Promise<string> {
  const line = [Deno.execPath(), "run", "-A", MAIN, ...args].map((a) => `'${a}'`).join(" ");
  const child = new Deno.Command("script", {
    args: ["-qfec", line, "/dev/null"],
    env: { TERM: "xterm", NO_COLOR: "" },
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let output = "", answered = false;
  const decoder = new TextDecoder();
  const reader = child.stdout.getReader();
  const writer = child.stdin.getWriter();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeout);
  try {
    while (!until(output)) {
      const { value, done } = await reader.read();
      if (done) break;
      output += decoder.decode(value, { stream: true });
      if (answer !== undefined && !answered && output.includes("[y/N]")) {
        answered = true;
        await writer.write(new TextEncoder().encode(answer));
      }
    }
  } finally {
    clearTimeout(timer);
    await reader.cancel();
    try {
      child.kill("SIGTERM");
    } catch {
      // Exited already.
    }
    await writer.close().catch(() => {});
    await child.status;
  }
  return output;
}

Deno.test("CLI: watch redraws in place on a terminal and shows drain progress with a rate and an ETA", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("w", { redis: redis.url });
  await queue.enqueueMany("nap", Array.from({ length: 3_000 }, () => ({ data: 3 })));
  const nap = task("nap", (ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  await using worker = new Worker("w", [nap], {
    redis: redis.url,
    handleSignals: false,
    concurrency: 2,
  });
  const output = underPty(
    ["watch", "w", "--interval", "200ms", "--redis", redis.url],
    (out) => out.split(CLEAR).length > 3 && /draining .*ETA/.test(out),
  );
  const run = worker.run();
  const text = await output;
  await worker.stop();
  await run;
  const frames = text.split(CLEAR).slice(1);
  assert.ok(frames.length >= 3, `frames: ${frames.length}`);
  assert.ok(text.includes(`${ESC}[?25l`), "hides the cursor");
  assert.ok(text.includes(`${ESC}[34m`), "colour on a terminal");
  const waiting = frames.map((f) =>
    Number(/waiting\s+\W\[34m\s*([\d,]+)/.exec(f)?.[1]?.replace(/,/g, ""))
  );
  assert.ok(new Set(waiting).size >= 2, `counts change between frames: ${waiting}`);
  assert.match(text, /draining [█░]+ \d+%\s+\d+\/s\s+ETA \S+/);
  assert.match(text, /vm|WORKER/);
});

Deno.test("CLI: destructive commands ask on a terminal, and show a progress bar while they work", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("d", { redis: redis.url });
  await queue.enqueueMany("t", Array.from({ length: 2_000 }, (_, i) => ({ data: i })));
  const args = ["drain", "d", "--redis", redis.url];
  const declined = await underPty(args, (out) => out.includes("Nothing done"), "n\n");
  assert.match(declined, /Drain queue d: cancel 2000 waiting and 0 delayed jobs\? \[y\/N\]/);
  assert.equal((await queue.stats()).waiting, 2_000, "nothing drained");
  const done = await underPty(args, (out) => out.includes("Drained"), "y\n");
  assert.match(done, /draining [█░]+ \d+\/2,000 \d+\/s ETA/);
  assert.match(done, /Drained 2000 waiting and 0 delayed job\(s\)/);
  assert.equal((await queue.stats()).waiting, 0);
});

Deno.test("CLI: a queue with priorities is handled with the priorities recorded in Redis", async () => {
  await using redis = await startRedis();
  const url = redis.url;
  await using queue = new Queue("p", { redis: url, priorities: ["bulk", "urgent"] });
  await queue.enqueue("t", 1, { id: "first" }); // records the list
  const plain = await cli(url, "enqueue", "p", "t", "2", "--id", "plain", "--json");
  assert.equal(plain.code, 0, plain.stderr);
  const urgent = await cli(
    url,
    "enqueue",
    "p",
    "t",
    "3",
    "--id",
    "u1",
    "--priority",
    "urgent",
    "--json",
  );
  assert.equal(urgent.code, 0, urgent.stderr);
  const page = (await cli(url, "jobs", "p", "waiting", "--json")).json as {
    jobs: { id: string; priority: string }[];
  };
  assert.deepEqual(page.jobs.map((j) => [j.id, j.priority]), [
    ["u1", "urgent"],
    ["first", "bulk"],
    ["plain", "bulk"],
  ]);
  // A job in the higher priority's stream is cancelled there, and the others stay.
  assert.deepEqual((await cli(url, "cancel", "p", "u1", "--json")).json, {
    cancelled: true,
    state: "waiting",
  });
  assert.equal((await queue.stats()).waiting, 2);
  const bad = await cli(url, "enqueue", "p", "t", "4", "--priority", "nope");
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /priority/);
});

/**
 * Tracing across processes, with Deno's built-in OpenTelemetry and its console exporter: a
 * producer's span goes into field `trace`, and the worker runs the job in a consumer span of
 * the same trace, with an error status when the handler fails. And ctx.job.traceId.
 */
import assert from "node:assert/strict";
import { Queue, task, type TaskContext, Worker } from "../mod.ts";
import { startRedis } from "../src/testing.ts";
import { inspect, WorkerProcess } from "./_helpers.ts";
import { delay } from "../src/async.ts";

const OTEL = {
  OTEL_DENO: "true",
  OTEL_EXPORTER_OTLP_PROTOCOL: "console",
  // Spans exported every 100 ms, not every 5 s.
  OTEL_BSP_SCHEDULE_DELAY: "100",
  NO_COLOR: "1",
};

/** Runs the traced producer: its trace and span ids, and the job id. */
async function produce(url: string, taskName: string, data: unknown) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./fault/_traced_producer.ts", import.meta.url).pathname,
      "--redis",
      url,
      "--task",
      taskName,
      "--data",
      JSON.stringify(data),
    ],
    env: OTEL,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
  const line = text.split("\n").find((l) => l.startsWith("{"));
  assert.ok(line, text);
  return JSON.parse(line) as { traceId: string; spanId: string; id: string };
}

/** The console exporter's lines for span `name` in trace `traceId`: its header and details. */
function spanLines(stderr: string[], name: string, traceId: string): string[] | undefined {
  const at = stderr.findIndex((l) => l.startsWith(`SPAN ${name} [${traceId}/`));
  if (at === -1) return undefined;
  const end = stderr.findIndex((l, i) => i > at && /^(SPAN|LOG|METRIC) /.test(l));
  return stderr.slice(at, end === -1 ? undefined : end);
}

async function waitForSpan(w: WorkerProcess, name: string, traceId: string): Promise<string[]> {
  for (let i = 0; i < 400; i++) {
    const lines = spanLines(w.stderr, name, traceId);
    // The span's details follow its header: wait for the scope line.
    if (lines !== undefined && lines.some((l) => l.trim().startsWith("scope:"))) return lines;
    await delay(25);
  }
  assert.fail(`no span "${name}" in trace ${traceId}:\n${w.stderr.join("\n")}`);
}

Deno.test("a producer's trace goes on in the worker process: one trace id, the consumer span its child", async () => {
  await using redis = await startRedis();
  await using ledger = await startRedis();
  await using worker = new WorkerProcess(redis.url, { ledger: ledger.url }, OTEL);
  const ok = await produce(redis.url, "sleep", { ms: 1 });
  await worker.waitFor((e) => e.ev === "completed" && e.id === ok.id, "the traced job");
  const span = await waitForSpan(worker, "q process", ok.traceId);
  assert.match(span[0]!, / Consumer /);
  assert.ok(span.some((l) => l.trim() === `parent: ${ok.spanId}`), span.join("\n"));
  assert.ok(span.some((l) => l.trim() === `messaging.message.id: ${ok.id}`), span.join("\n"));
  assert.ok(span.some((l) => l.trim() === "sluice.task: sleep"), span.join("\n"));
  assert.ok(
    span.some((l) => l.trim() === "messaging.consumer.group.name: sluice"),
    span.join("\n"),
  );
  assert.ok(!span.some((l) => l.includes("status: Error")), span.join("\n"));
  // A failing job: each attempt's span records the exception, with an error status.
  const bad = await produce(redis.url, "throw", null);
  await worker.waitFor((e) => e.ev === "dead" && e.id === bad.id, "the failing job dead");
  const failed = await waitForSpan(worker, "q process", bad.traceId);
  assert.ok(failed.some((l) => l.trim() === "status: Error (poison)"), failed.join("\n"));
  assert.ok(failed.some((l) => l.includes("exception.message: poison")), failed.join("\n"));
  worker.signal("SIGTERM");
  assert.equal((await worker.status).code, 0);
});

Deno.test("ctx.job.traceId is the producer's; without tracing, an enqueue writes no trace", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await using db = inspect(redis.url);
  // No SDK in this process: nothing is written.
  await queue.enqueue("t", 1);
  const [entry] = await db.xrange(queue.keys.stream, "-", "+");
  assert.ok(entry !== undefined && !entry[1].includes("trace"), String(entry));
  // Entries written by another language, with a traceparent, and with a broken one.
  const traceId = "0af7651916cd43dd8448eb211c80319c";
  const enq = String(Date.now());
  for (const [id, trace] of [["a", `00-${traceId}-b7ad6b7169203331-01`], ["b", "garbage"]]) {
    await db.xadd(
      queue.keys.stream,
      "*",
      "v",
      "1",
      "id",
      id!,
      "task",
      "t",
      "data",
      "1",
      "attempt",
      "1",
      "enq",
      enq,
      "trace",
      trace!,
    );
  }
  const seen = new Map<string, string | undefined>();
  const t = task("t", (_: number, ctx: TaskContext) => void seen.set(ctx.job.id, ctx.job.traceId));
  const worker = new Worker("q", [t], { redis: redis.url, handleSignals: false });
  worker.addEventListener("completed", () => seen.size === 3 && worker.stop());
  await worker.run();
  assert.equal(seen.get("a"), traceId);
  assert.equal(seen.get("b"), undefined);
  assert.equal([...seen.values()].filter((v) => v === undefined).length, 2);
});

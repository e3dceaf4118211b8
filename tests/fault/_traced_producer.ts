// deno-lint-ignore-file no-console
/**
 * A producer process for the tracing test: inside an active span ("request"), it enqueues
 * one job of task `--task` with data `--data` (JSON) on queue q, then prints
 * { traceId, spanId, id } as one JSON line. Run it with OTEL_DENO=true.
 *
 *   deno run -A tests/fault/_traced_producer.ts --redis URL --task sleep --data '{"ms":1}'
 */
import { parseArgs } from "node:util";
import { trace } from "@opentelemetry/api";
import { Queue } from "../../mod.ts";

const { values } = parseArgs({
  options: {
    redis: { type: "string" },
    task: { type: "string", default: "sleep" },
    data: { type: "string", default: "null" },
  },
});
await using queue = new Queue("q", { redis: values.redis! });
const tracer = trace.getTracer("producer");
await tracer.startActiveSpan("request", async (span) => {
  const handle = await queue.enqueue(values.task!, JSON.parse(values.data!));
  const { traceId, spanId } = span.spanContext();
  console.log(JSON.stringify({ traceId, spanId, id: handle.id }));
  span.end();
});

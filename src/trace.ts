/**
 * Tracing through `npm:@opentelemetry/api`, which Deno's built-in OpenTelemetry registers with
 * (`OTEL_DENO=true`): enqueue writes the active span's W3C traceparent into the wire field
 * `trace`, and a Worker runs each handler inside a consumer span whose parent is that context,
 * so the producer's trace goes on through the job (and through `fetch` calls in the handler).
 * With no SDK registered, nothing is made per job.
 *
 * @module
 */
import {
  context,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import type { Job } from "./job.ts";
import { VERSION } from "./version.ts";

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * The W3C traceparent of the active span, or undefined if none is active (or no SDK is
 * registered: the no-op span has no valid context).
 *
 * @example
 * ```ts
 * import { activeTraceparent } from "./trace.ts";
 * console.log(activeTraceparent()); // undefined: no span is active
 * ```
 */
export function activeTraceparent(): string | undefined {
  const span = trace.getActiveSpan();
  if (span === undefined) return undefined;
  const sc = span.spanContext();
  if (!trace.isSpanContextValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

/** The trace id of a traceparent, or undefined if it is not one. */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  const m = traceparent === undefined ? null : TRACEPARENT.exec(traceparent);
  return m === null || /^0+$/.test(m[1]!) ? undefined : m[1];
}

/** A Worker's consumer spans: one per job run. */
export class JobTracer {
  readonly #tracer: Tracer;
  readonly #queue: string;
  readonly #group: string;

  private constructor(tracer: Tracer, queue: string, group: string) {
    this.#tracer = tracer;
    this.#queue = queue;
    this.#group = group;
  }

  /**
   * A tracer for the queue's jobs, or undefined while no OpenTelemetry SDK is registered: a
   * probe span tells (the no-op tracer's spans have no valid context; a real one's do, sampled
   * or not).
   */
  static create(queue: string, group: string): JobTracer | undefined {
    const tracer = trace.getTracer("sluice", VERSION);
    const probe = tracer.startSpan("sluice probe");
    const real = trace.isSpanContextValid(probe.spanContext());
    // Never ended: an unended span is not exported.
    return real ? new JobTracer(tracer, queue, group) : undefined;
  }

  /** Starts the consumer span of `job`'s run, child of the producer's context if it has one. */
  start(job: Job): Span {
    let parent = context.active();
    const m = job.trace === undefined ? null : TRACEPARENT.exec(job.trace);
    if (m !== null && traceIdOf(job.trace) !== undefined) {
      parent = trace.setSpanContext(parent, {
        traceId: m[1]!,
        spanId: m[2]!,
        traceFlags: parseInt(m[3]!, 16),
        isRemote: true,
      });
    }
    const attributes: Record<string, string | number> = {
      "messaging.system": "sluice",
      "messaging.operation.type": "process",
      "messaging.operation.name": "process",
      "messaging.destination.name": this.#queue,
      "messaging.message.id": job.id,
      "messaging.consumer.group.name": this.#group,
      "sluice.consumer": job.token.consumer,
      "sluice.task": job.task,
      "sluice.attempt": job.attempt,
      "sluice.deliveries": job.deliveries,
    };
    if (job.priority !== undefined) attributes["sluice.priority"] = job.priority;
    if (job.group !== undefined) attributes["sluice.group"] = job.group;
    return this.#tracer.startSpan(
      `${this.#queue} process`,
      { kind: SpanKind.CONSUMER, attributes },
      parent,
    );
  }

  /** Runs `fn` with `span` active: spans (and fetch calls) made inside are its children. */
  run<T>(span: Span, fn: () => T): T {
    return context.with(trace.setSpan(context.active(), span), fn);
  }

  /** Ends `span` with the run's outcome: an error is recorded, with an error status. */
  end(span: Span, error?: Error): void {
    if (error !== undefined) {
      span.recordException(error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
    }
    span.end();
  }
}

/**
 * Completion webhooks: a job enqueued with `webhook: url` gets, when it ends (completed, dead
 * or cancelled), a delivery job of task `sluice.webhook`, written by the very script that ends
 * it (see `hook` in scripts/_prelude.ts). Every Worker runs that task: it POSTs the outcome to
 * the URL, retrying with backoff on a 5xx, a 408, a 429, a timeout or a network error, and
 * dead-letters the delivery when its attempts run out. A receiver that is down loses nothing
 * and slows no one: the job it reports on was settled long before.
 *
 * With signing keys, the URL is covered by the original job's signature (wire field
 * `webhook`); the delivery carries the job's fields, and the worker checks that signature, and
 * that the body names that job, before it POSTs anywhere, so an entry forged in Redis cannot
 * make workers call a URL of its choosing. The body is signed with the current key in header
 * `sluice-signature`: `t=<ms>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. What the body says of
 * the outcome comes from Redis, where the script that ended the job wrote it: the signature
 * proves a worker of the queue sent it, not that Redis was not tampered with.
 *
 * Only a Worker runs deliveries: a `consume()` stream has no handler for them (with signing
 * keys it dead-letters them as `bad-signature`, since a script cannot sign them).
 *
 * @module
 */
import { checkRetry, type RetryOptions } from "./backoff.ts";
import { decodeFields, validWebhook } from "./codec.ts";
import { NonRetryableError } from "./errors.ts";
import { checkInt, MAX_MS, show } from "./_options.ts";
import type { Signer } from "./sign.ts";
import { type AnyTask, task } from "./task.ts";
import { VERSION } from "./version.ts";

/** The task name of webhook deliveries: reserved, a Worker runs it itself. */
export const WEBHOOK_TASK = "sluice.webhook";

/** Options of a Worker's webhook deliveries. */
export interface WebhookOptions {
  /**
   * How long (ms) one POST may take, headers and body, before it counts as failed (and is
   * tried again): 1 to 600,000.
   *
   * @default {10_000}
   */
  timeout?: number;
  /**
   * The deliveries' retry policy.
   *
   * @default {{ attempts: 10, backoff: { type: "exponential", base: 1_000, max: 3_600_000 } }}
   */
  retry?: RetryOptions;
}

/** What a delivery job carries: where, what, and the original job's fields. */
interface Delivery {
  url: string;
  body: string;
  job: string[];
}

/**
 * The checked webhook options of a Worker.
 *
 * @throws {TypeError} If they are not an object of known options.
 * @throws {RangeError} If a number is out of range.
 */
export function checkWebhookOptions(
  action: string,
  options: unknown,
): Required<WebhookOptions> {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(`${action}: webhooks must be an object, got ${show(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (key !== "timeout" && key !== "retry") {
      throw new TypeError(`${action}: webhooks has no option ${JSON.stringify(key)}`);
    }
  }
  const {
    timeout = 10_000,
    retry = { attempts: 10, backoff: { type: "exponential", base: 1_000, max: 3_600_000 } },
  } = options as WebhookOptions;
  checkInt(action, "webhooks.timeout", timeout, 1, 600_000);
  checkRetry(`${action}: webhooks`, retry);
  return { timeout, retry };
}

/**
 * The task that delivers webhooks, for a Worker whose queue signs with `signer` (if any).
 */
export function webhookTask(
  signer: Signer | undefined,
  options: Required<WebhookOptions>,
): AnyTask {
  return task(WEBHOOK_TASK, async (delivery: Delivery, ctx) => {
    const { url, body, job } = delivery ?? {};
    if (typeof url !== "string" || typeof body !== "string" || !Array.isArray(job)) {
      throw new NonRetryableError(`Cannot deliver webhook: the delivery is not {url, body, job}`);
    }
    const wire = decodeFields(job);
    if ("reason" in wire || wire.webhook !== url || !validWebhook(url)) {
      throw new NonRetryableError(
        `Cannot deliver webhook to ${show(url)}: it is not the webhook of the job it reports on`,
      );
    }
    if (signer !== undefined && !await signer.verify(wire)) {
      throw new NonRetryableError(
        `Cannot deliver webhook of job ${wire.id} to ${url}: the job's signature does not cover it`,
      );
    }
    // The body reports on that job, and no other.
    let about: { id?: unknown; task?: unknown } | undefined;
    try {
      about = JSON.parse(body);
    } catch {
      // not JSON: refused below
    }
    if (about?.id !== wire.id || about?.task !== wire.task) {
      throw new NonRetryableError(
        `Cannot deliver webhook of job ${wire.id} to ${url}: its body is about another job`,
      );
    }
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "user-agent": `sluice/${VERSION}`,
      "sluice-job-id": wire.id,
      "sluice-delivery": `${ctx.job.id} ${ctx.job.attempt}`,
    };
    if (signer !== undefined) {
      const t = Date.now();
      headers["sluice-signature"] = `t=${t},v1=${await signer.hex(`${t}.${body}`)}`;
    }
    let response: Response;
    try {
      response = await fetch(url, {
        method: "POST",
        body,
        headers,
        redirect: "manual",
        signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(options.timeout)]),
      });
    } catch (err) {
      throw new Error(`Cannot deliver webhook of job ${wire.id} to ${url}: ${describe(err)}`, {
        cause: err,
      });
    }
    await response.body?.cancel();
    const { status } = response;
    if (status >= 200 && status < 300) return { status };
    const message = `Cannot deliver webhook of job ${wire.id} to ${url}: it answered ${status}`;
    // A 5xx, a timeout or too many requests may pass; any other answer will not.
    if (status >= 500 || status === 408 || status === 429) throw new Error(message);
    throw new NonRetryableError(message);
  }, { retry: options.retry, timeout: Math.min(MAX_MS, options.timeout + 5_000) });
}

function describe(err: unknown): string {
  if (err instanceof DOMException && err.name === "TimeoutError") return "no answer in time";
  return err instanceof Error ? err.message : String(err);
}

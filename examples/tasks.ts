/**
 * The tasks the examples share: a worker imports them to run them, a producer to enqueue
 * them with typed, validated data.
 */
import { NonRetryableError, type StandardSchemaV1, task } from "../mod.ts";
import { delay } from "../src/async.ts";

/** A tiny Standard Schema, written inline; zod, valibot or arktype schemas work the same way. */
const emailSchema: StandardSchemaV1<unknown, { to: string; subject: string }> = {
  "~standard": {
    version: 1,
    vendor: "example",
    validate: (value) => {
      const v = value as { to?: unknown; subject?: unknown };
      if (typeof v?.to !== "string" || !v.to.includes("@")) {
        return { issues: [{ message: "must be an email address", path: ["to"] }] };
      }
      if (typeof v.subject !== "string") {
        return { issues: [{ message: "must be a string", path: ["subject"] }] };
      }
      return { value: { to: v.to, subject: v.subject } };
    },
  },
};

/** Sends an email (here: waits a few ms, as an SMTP call would). */
export const sendEmail = task("email.send", async (data, ctx) => {
  await delay(1 + Math.random() * 4, { signal: ctx.signal });
  return { delivered: data.to };
}, { schema: emailSchema, retry: { attempts: 3 } });

/** Resizes an image; fails once in a while, and succeeds on a retry. */
export const resize = task("image.resize", async (data: { url: string; width: number }, ctx) => {
  if (data.width <= 0) throw new NonRetryableError(`width must be > 0, got ${data.width}`);
  await delay(2, { signal: ctx.signal });
  if (ctx.job.attempt === 1 && data.width % 10 === 7) throw new Error("flaky upstream");
  return { url: `${data.url}?w=${data.width}` };
}, { retry: { attempts: 3, backoff: { type: "exponential", base: 50 } } });

/** Every task the example worker runs. */
export const tasks = [sendEmail, resize];

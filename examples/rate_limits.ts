// deno-lint-ignore-file no-console
/**
 * Rate limits: at most 5 emails a second across every worker, and a 429 from the remote API
 * pausing the task everywhere. `deno run -A examples/rate_limits.ts`
 */
import { Queue, task, Worker } from "../mod.ts";
import { exampleRedis } from "./_redis.ts";

await using redis = await exampleRedis();
const started = performance.now();
const since = () => `${Math.round(performance.now() - started)} ms`;
const allDone = Promise.withResolvers<void>();
let sent = 0, saidTooMany = false;

const email = task("email", (to: string, ctx) => {
  // A remote API that answers 429 once: the task pauses for 300 ms on every worker, and this
  // job runs again after it, still on its first attempt.
  if (to === "c@example.com" && !saidTooMany) {
    saidTooMany = true;
    console.log(`${since()}: 429 for ${to}, pausing email for 300 ms`);
    ctx.rateLimited(300);
  }
  console.log(`${since()}: sent to ${to} (attempt ${ctx.job.attempt})`);
  if (++sent === 12) allDone.resolve();
}, { rateLimit: { limit: 5, interval: 1_000 } });

await using queue = new Queue("mail", { redis: redis.url });
await queue.enqueueMany(
  email,
  Array.from({ length: 12 }, (_, i) => ({ data: `${String.fromCharCode(97 + i)}@example.com` })),
);

// Two workers share the limit: together they start at most 5 emails in any second.
const options = { redis: redis.url, concurrency: 4, handleSignals: false };
await using one = new Worker("mail", [email], options);
await using two = new Worker("mail", [email], options);
const runs = [one.run(), two.run()];
await allDone.promise;
console.log(`12 emails in ${since()}: 5 a second at most, none charged an attempt`);
await Promise.all([one.stop(), two.stop()]);
await Promise.all(runs);

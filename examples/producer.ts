// deno-lint-ignore-file no-console
/**
 * A producer: enqueues typed jobs (validated against the task's schema before anything is
 * written), in one pipelined round trip for many.
 *
 *   REDIS_URL=redis://127.0.0.1:6379 deno run -A examples/producer.ts
 */
import { Queue } from "../mod.ts";
import { resize, sendEmail } from "./tasks.ts";

await using queue = new Queue(Deno.env.get("QUEUE") ?? "demo", {
  redis: Deno.env.get("REDIS_URL") ?? "redis://127.0.0.1:6379",
});
const one = await queue.enqueue(sendEmail, { to: "ada@example.com", subject: "hi" });
const many = await queue.enqueueMany(
  resize,
  Array.from({ length: 100 }, (_, i) => ({ data: { url: `/img/${i}.png`, width: 100 + i } })),
);
// By name, for producers that don't import the worker's code (no schema check then).
await queue.enqueue("email.send", { to: "bob@example.com", subject: "by name" });
console.log(`enqueued ${1 + many.length + 1} jobs; first id ${one.id}`);

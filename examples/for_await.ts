// deno-lint-ignore-file no-console
/**
 * The job stream without a pool: `for await` over `queue.consume()`, settling each job by
 * hand. Leases are renewed and dead peers' jobs reclaimed all the same.
 *
 *   REDIS_URL=redis://127.0.0.1:6379 deno run -A examples/for_await.ts
 */
import { Queue } from "../mod.ts";

await using queue = new Queue(Deno.env.get("QUEUE") ?? "for-await", {
  redis: Deno.env.get("REDIS_URL") ?? "redis://127.0.0.1:6379",
});
await queue.enqueueMany("square", [1, 2, 3, 4, 5].map((n) => ({ data: n })));

const controller = new AbortController();
let left = 5;
for await (const job of queue.consume({ signal: controller.signal, prefetch: 16 })) {
  try {
    const n = job.data as number;
    console.log(`${job.task}(${n}) = ${n * n}`);
    await job.ack();
  } catch (err) {
    await job.retry(err);
  }
  if (--left === 0) controller.abort(); // ends the stream; unread prefetched jobs go back
}

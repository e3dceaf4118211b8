// deno-lint-ignore-file no-console
/**
 * Tenant isolation: a producer scoped to one group sees and cancels its own jobs only.
 * `deno run -A examples/tenants.ts`
 */
import { Queue } from "../mod.ts";
import { exampleRedis } from "./_redis.ts";

await using redis = await exampleRedis();
await using queue = new Queue("exports", { redis: redis.url });
const acme = queue.forGroup("acme");
const globex = queue.forGroup("globex");

const job = await acme.enqueue("export", { table: "invoices" });
console.log("acme sees its job:", (await acme.job(job.id).info())?.state);
console.log("globex sees:", await globex.job(job.id).info());
console.log("globex cancels:", await globex.job(job.id).cancel());
try {
  await globex.enqueue("export", { table: "invoices" }, { group: "acme" });
} catch (err) {
  console.log("globex enqueues for acme:", (err as Error).message);
}
console.log("acme cancels:", await acme.job(job.id).cancel());

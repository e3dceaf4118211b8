// deno-lint-ignore-file no-console
/** Awaits one job's result in its own process and prints it as JSON: {"result": ...}. */
import { parseArgs } from "node:util";
import { Queue } from "../../mod.ts";

const { values } = parseArgs({
  options: { redis: { type: "string" }, queue: { type: "string" }, id: { type: "string" } },
});
await using queue = new Queue(values.queue!, { redis: values.redis! });
console.log(JSON.stringify({ ready: true }));
try {
  const result = await queue.job(values.id!).result({ signal: AbortSignal.timeout(20_000) });
  console.log(JSON.stringify({ result }));
} catch (err) {
  console.log(JSON.stringify({ error: (err as Error).name, message: (err as Error).message }));
}

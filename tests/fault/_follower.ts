// deno-lint-ignore-file no-console
/**
 * A follower process for the events test: prints "ready" once it follows queue q's events
 * from now on, then each event as one JSON line, and exits 0 after `--until` completed events.
 *
 *   deno run -A tests/fault/_follower.ts --redis URL --until 100
 */
import { parseArgs } from "node:util";
import { Queue } from "../../mod.ts";

const { values } = parseArgs({
  options: { redis: { type: "string" }, until: { type: "string", default: "1" } },
});
await using queue = new Queue("q", { redis: values.redis! });
const stop = new AbortController();
const events = queue.events({ signal: stop.signal });
// The stream's start ("$") is asked on the command connection as the stream is made: a call
// behind it answers only after it, so the stream follows everything written from here on.
await queue.stats();
console.log("ready");
let completed = 0;
for await (const event of events) {
  console.log(JSON.stringify(event));
  if (event.type === "completed" && ++completed >= Number(values.until)) stop.abort();
}

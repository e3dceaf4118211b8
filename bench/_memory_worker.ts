/**
 * One worker process of the bench's memory row: `deno run -A bench/_memory_worker.ts <redis URL>
 * <queue> <jobs> <every> [floor <stream>]`. Runs no-op jobs at concurrency 32 with default
 * options, as a user's worker would, while the bench process enqueues them. Prints one JSON line of
 * `Deno.memoryUsage()` once its first job has ended (the idle reading: connected and waiting),
 * then one each time `every` more jobs have ended. After `jobs`, it stays connected and idle,
 * reads its memory every second, and prints one last reading, with field `rest` (seconds), once
 * its RSS is back under 1.5 times the idle reading's (V8 hands back the heap it grew for the
 * load once allocation stops) or after REST_MAX_S; then it exits.
 *
 * With `floor`, the process runs a bare ioredis loop on the queue's stream instead (XREADGROUP
 * COUNT 200, then XACK and XDEL): what a Deno process doing the least work per job holds.
 */
import { Redis } from "ioredis";
import { task, Worker } from "../mod.ts";

const [url, name, jobsArg, everyArg, mode, stream] = Deno.args;
const jobs = Number(jobsArg), every = Number(everyArg);
/** The longest the process waits, idle, for its memory to come back down. */
const REST_MAX_S = 60;
let done = 0, idleRss = 0;
const finished = Promise.withResolvers<void>();
const report = (rest?: number) => {
  const { rss, heapUsed, heapTotal, external } = Deno.memoryUsage();
  idleRss ||= rss;
  // deno-lint-ignore no-console
  console.log(JSON.stringify({ done, rss, heapUsed, heapTotal, external, rest }));
};
const tick = () => {
  if (++done === 1 || done % every === 0) report();
  if (done === jobs) finished.resolve();
};
/** Idles, connected, until RSS is back under 1.5x idle or REST_MAX_S pass; reports then. */
const rest = async () => {
  for (let s = 1; s <= REST_MAX_S; s++) {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    if (Deno.memoryUsage().rss <= 1.5 * idleRss || s === REST_MAX_S) return report(s);
  }
};

if (mode === "floor") {
  const redis = new Redis(url!);
  await redis.xgroup("CREATE", stream!, "floor", "0", "MKSTREAM");
  while (done < jobs) {
    const reply = await redis.xreadgroup(
      "GROUP",
      "floor",
      "c",
      "COUNT",
      200,
      "BLOCK",
      1_000,
      "STREAMS",
      stream!,
      ">",
    ) as [string, [string, string[]][]][] | null;
    const ids = reply?.[0]?.[1].map(([id]) => id) ?? [];
    if (ids.length === 0) continue;
    await redis.pipeline().xack(stream!, "floor", ...ids).xdel(stream!, ...ids).exec();
    for (let i = 0; i < ids.length; i++) tick();
  }
  await rest();
  redis.disconnect();
} else {
  const worker = new Worker(name!, [task("noop", tick)], {
    redis: url!,
    concurrency: 32,
    handleSignals: false,
    logger: { warn() {}, error() {} },
  });
  const run = worker.run();
  await finished.promise;
  await rest();
  await worker.stop();
  await run;
}

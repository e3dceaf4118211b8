/**
 * One worker process of the bench's memory row: `deno run -A bench/_memory_worker.ts <redis URL>
 * <queue> <jobs> <every> [floor <stream>]`. Runs no-op jobs at concurrency 32 with default
 * options, as a user's worker would, while the bench process enqueues them. Prints one JSON line of
 * `Deno.memoryUsage()` once its first job has ended (the idle reading: connected and waiting),
 * then one each time `every` more jobs have ended, and exits after `jobs`.
 *
 * With `floor`, the process runs a bare ioredis loop on the queue's stream instead (XREADGROUP
 * COUNT 200, then XACK and XDEL): what a Deno process doing the least work per job holds.
 */
import { Redis } from "ioredis";
import { task, Worker } from "../mod.ts";

const [url, name, jobsArg, everyArg, mode, stream] = Deno.args;
const jobs = Number(jobsArg), every = Number(everyArg);
let done = 0;
const finished = Promise.withResolvers<void>();
const report = () => {
  const { rss, heapUsed, heapTotal, external } = Deno.memoryUsage();
  // deno-lint-ignore no-console
  console.log(JSON.stringify({ done, rss, heapUsed, heapTotal, external }));
};
const tick = () => {
  if (++done === 1 || done % every === 0) report();
  if (done === jobs) finished.resolve();
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
  await worker.stop();
  await run;
}

/**
 * The bench's scale-out rows: the same no-op workload, 3 queues with one worker process each
 * (concurrency 32, no records kept), on a loopback Redis Cluster of 3 masters, first with the
 * 3 queues on one master, then with one queue on each master. Jobs are enqueued beforehand.
 * Reports jobs/s over all three, and Redis CPU per job summed over the masters.
 *
 * Run alone: `deno run -A bench/scale.ts [--quick]`.
 */
import { Redis } from "ioredis";
import { Queue, task } from "../mod.ts";
import { keySlot } from "../src/redis/cluster.ts";
import { startCluster } from "../src/testing.ts";

const WORKER = new URL("./_scale_worker.ts", import.meta.url).pathname;
const noop = task("noop", () => {});

/** One scale-out row. */
export interface ScaleRow {
  masters: number;
  rate: number;
  redisCpuUsPerJob: number;
  workerCpuUsPerJob: number;
}

/** Runs both rows on one cluster; `jobs` per queue. */
export async function scaleOut(jobs: number): Promise<{ one: ScaleRow; three: ScaleRow }> {
  await using cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
  const masters = cluster.nodes.filter((n) => n.role === "master");
  const owners = await slotOwners(masters[0]!.url);
  // Queue names by the master that owns them: three per master.
  const byMaster = new Map<number, string[]>();
  for (let i = 0; [...byMaster.values()].filter((q) => q.length >= 3).length < 3; i++) {
    const name = `scale${i}`;
    const port = owners(keySlot(`{${name}}`));
    const list = byMaster.get(port) ?? [];
    if (list.length < 3) list.push(name);
    byMaster.set(port, list);
  }
  const lists = [...byMaster.values()];
  const one = await row(cluster.urls, masters.map((m) => m.url), lists[0]!, jobs, 1);
  const three = await row(
    cluster.urls,
    masters.map((m) => m.url),
    lists.map((l) => l[1]!),
    jobs,
    3,
  );
  return { one, three };
}

/** A function from slot to the port of its master, from CLUSTER SLOTS. */
async function slotOwners(url: string): Promise<(slot: number) => number> {
  const admin = new Redis(url);
  try {
    const ranges = (await admin.call("CLUSTER", "SLOTS")) as [number, number, [string, number]][];
    return (slot) => ranges.find(([from, to]) => from <= slot && slot <= to)![2][1];
  } finally {
    admin.disconnect();
  }
}

async function redisCpu(urls: string[]): Promise<number> {
  let total = 0;
  for (const url of urls) {
    const admin = new Redis(url);
    const info = await admin.info("cpu");
    admin.disconnect();
    const get = (name: string) => Number(info.match(new RegExp(`${name}:([\\d.]+)`))?.[1] ?? 0);
    total += get("used_cpu_user") + get("used_cpu_sys");
  }
  return total * 1e6;
}

async function row(
  urls: readonly string[],
  masterUrls: string[],
  queues: string[],
  jobs: number,
  masters: number,
): Promise<ScaleRow> {
  const redis = { cluster: [...urls] };
  for (const name of queues) {
    await using queue = new Queue(name, { redis });
    for (let i = 0; i < jobs; i += 10_000) {
      await queue.enqueueMany(
        noop,
        Array.from({ length: Math.min(10_000, jobs - i) }, () => ({ data: null })),
      );
    }
  }
  const before = await redisCpu(masterUrls);
  const outputs = await Promise.all(queues.map((name) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", WORKER, JSON.stringify(redis), name, String(jobs)],
      stdout: "piped",
      stderr: "inherit",
    }).output()
  ));
  const after = await redisCpu(masterUrls);
  const runs = outputs.map((o) => {
    if (!o.success) throw new Error(`bench: a scale-out worker failed (${o.code})`);
    return JSON.parse(new TextDecoder().decode(o.stdout).trim()) as {
      first: number;
      last: number;
      cpuUs: number;
    };
  });
  const span = Math.max(...runs.map((r) => r.last)) - Math.min(...runs.map((r) => r.first));
  const total = jobs * queues.length;
  return {
    masters,
    rate: Math.round(total / (span / 1_000)),
    redisCpuUsPerJob: Math.round((after - before) / total * 10) / 10,
    workerCpuUsPerJob: Math.round(runs.reduce((s, r) => s + r.cpuUs, 0) / total * 10) / 10,
  };
}

if (import.meta.main) {
  const jobs = Deno.args.includes("--quick") ? 20_000 : 100_000;
  // deno-lint-ignore no-console
  console.log(await scaleOut(jobs));
}

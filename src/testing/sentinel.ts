/**
 * `startSentinel()`: a throwaway master, its replicas and Sentinel processes on loopback.
 *
 * @module
 */
import {
  fields,
  halt,
  onFreePort,
  onNode,
  pollUntil,
  QUICK_SYNC,
  type Server,
  spawn,
} from "./_process.ts";
import { startRedis, type TestRedis } from "./redis.ts";

/** Options of {@linkcode startSentinel}. */
export interface StartSentinelOptions {
  /**
   * How many replicas the master gets; a failover needs at least one.
   *
   * @default {1}
   */
  replicas?: number;
  /**
   * How many Sentinel processes watch the master. The quorum is a majority of them.
   *
   * @default {3}
   */
  sentinels?: number;
  /**
   * The name the Sentinels know the master by.
   *
   * @default {"mymaster"}
   */
  masterName?: string;
  /**
   * `down-after-milliseconds`: how long the master may not answer before a Sentinel thinks it
   * is down.
   *
   * @default {1000}
   */
  downAfterMs?: number;
  /**
   * `failover-timeout` (ms): how long a failover may take, and twice this before the
   * Sentinels try again after a failed one.
   *
   * @default {5000}
   */
  failoverTimeoutMs?: number;
  /**
   * Persistence of the master and replicas, as in {@linkcode StartRedisOptions.persistence}.
   *
   * @default {"none"}
   */
  persistence?: "none" | "always" | "everysec";
  /**
   * How long to wait for every process to start and every Sentinel to see the others (ms).
   *
   * @default {30_000}
   */
  timeout?: number;
}

/** A Sentinel process of a {@linkcode TestSentinel}. */
export interface TestSentinelProcess {
  /** Always `"127.0.0.1"`. */
  readonly host: string;
  /** The port it listens on. */
  readonly port: number;
  /** Its process id, or 0 once stopped. */
  readonly pid: number;
}

/** A running throwaway master, its replicas and the Sentinels watching them. */
export interface TestSentinel extends AsyncDisposable {
  /** The name the Sentinels know the master by. */
  readonly masterName: string;
  /** The first master. */
  readonly master: TestRedis;
  /** Its first replicas. */
  readonly replicas: readonly TestRedis[];
  /** The Sentinel processes. */
  readonly sentinels: readonly TestSentinelProcess[];
  /** What ioredis takes to connect through the Sentinels: `new Redis(sentinelOptions)`. */
  readonly sentinelOptions: {
    readonly sentinels: { host: string; port: number }[];
    readonly name: string;
  };
  /**
   * Kills the current master at once (SIGKILL), as a crash would, and waits for it to exit:
   * the first master, or the replica the last {@linkcode TestSentinel.waitForFailover}
   * reported.
   */
  killMaster(): Promise<void>;
  /**
   * Waits until every Sentinel reports the same master address, other than the current one.
   *
   * @param timeout How long to wait (ms); 20 000 by default.
   * @returns The new master's address.
   * @throws {Error} If the Sentinels report no new master in time.
   */
  waitForFailover(timeout?: number): Promise<{ host: string; port: number }>;
  /** Stops every Sentinel, master and replica, and deletes their data. */
  stop(): Promise<void>;
}

/**
 * Starts a master, its replicas (`--replicaof`) and `sentinels` Sentinel processes that watch
 * it, all on free loopback ports. Resolves once every replica is in sync and every Sentinel
 * knows the master, each replica and every other Sentinel. Dispose it (`await using`) or call
 * `stop()`.
 *
 * @param options How many replicas and Sentinels, the master's name and the timings.
 * @returns The servers, the options ioredis needs, and controls to cause a failover.
 * @throws {RangeError} If `replicas` is below 0, `sentinels` below 1, or a time is not > 0.
 * @throws {TypeError} If `masterName` is empty or holds whitespace.
 * @throws {Error} If `redis-server` is missing or the setup is not ready in time.
 *
 * @example Connect with ioredis through the Sentinels
 * ```ts
 * import { startSentinel } from "@sluice/sluice/testing";
 * import { Redis } from "ioredis";
 *
 * await using setup = await startSentinel({ sentinels: 1 });
 * const client = new Redis(setup.sentinelOptions);
 * try {
 *   await client.set("greeting", "hello");
 *   console.log(await client.get("greeting")); // "hello"
 * } finally {
 *   await client.quit();
 * }
 * ```
 */
export async function startSentinel(options: StartSentinelOptions = {}): Promise<TestSentinel> {
  const {
    replicas: replicaCount = 1,
    sentinels: sentinelCount = 3,
    masterName = "mymaster",
    downAfterMs = 1000,
    failoverTimeoutMs = 5000,
    persistence = "none",
    timeout = 30_000,
  } = options;
  const action = "Cannot start Redis Sentinel";
  if (!Number.isInteger(replicaCount) || replicaCount < 0) {
    throw new RangeError(
      `${action} as replicas must be an integer >= 0: current value is ${replicaCount}`,
    );
  }
  if (!Number.isInteger(sentinelCount) || sentinelCount < 1) {
    throw new RangeError(
      `${action} as sentinels must be an integer >= 1: current value is ${sentinelCount}`,
    );
  }
  for (
    const [name, value] of [["downAfterMs", downAfterMs], ["failoverTimeoutMs", failoverTimeoutMs]]
  ) {
    if (!Number.isInteger(value) || Number(value) <= 0) {
      throw new RangeError(
        `${action} as ${name} must be an integer > 0: current value is ${value}`,
      );
    }
  }
  if (!/^[\w.:-]+$/.test(masterName)) {
    throw new TypeError(
      `${action} as masterName must be non-empty with no whitespace: current value is ` +
        JSON.stringify(masterName),
    );
  }
  const deadline = Date.now() + timeout;
  const left = () => Math.max(deadline - Date.now(), 1);

  const servers: TestRedis[] = [];
  const sentinels: { port: number; dir: string; server: Server | undefined }[] = [];
  const stop = async () => {
    await Promise.all(sentinels.map(async (sentinel) => {
      const { server } = sentinel;
      sentinel.server = undefined;
      await halt(server, "SIGKILL");
      await Deno.remove(sentinel.dir, { recursive: true }).catch(() => {});
    }));
    await Promise.all(servers.map((server) => server.stop()));
  };
  try {
    const master = await startRedis({ persistence, args: QUICK_SYNC, timeout: left() });
    servers.push(master);
    const replicas = await Promise.all(Array.from({ length: replicaCount }, async () => {
      // Replicas may become masters and then serve replicas of their own.
      const args = ["--replicaof", "127.0.0.1", String(master.port), ...QUICK_SYNC];
      const replica = await startRedis({ persistence, args, timeout: left() });
      servers.push(replica);
      return replica;
    }));
    // Sentinels learn of the replicas from the master, so wait until it lists them.
    await pollUntil(
      deadline,
      () => `${action}: the replicas are not in sync`,
      () =>
        onNode(master.port, async (client) => {
          const info = String(await client.call("INFO", "replication"));
          const online = info.match(/^slave\d+:.*state=online/gm) ?? [];
          return online.length === replicaCount || undefined;
        }),
    );

    const quorum = Math.floor(sentinelCount / 2) + 1;
    await Promise.all(Array.from({ length: sentinelCount }, async () => {
      const dir = await Deno.makeTempDir({ prefix: "sluice-sentinel-" });
      const sentinel = { port: 0, dir, server: undefined as Server | undefined };
      sentinels.push(sentinel);
      [sentinel.port, sentinel.server] = await onFreePort(undefined, async (port) => {
        const config = `${dir}/sentinel.conf`;
        await Deno.writeTextFile(
          config,
          [
            `port ${port}`,
            "bind 127.0.0.1",
            `dir ${dir}`,
            "sentinel resolve-hostnames no",
            `sentinel monitor ${masterName} 127.0.0.1 ${master.port} ${quorum}`,
            `sentinel down-after-milliseconds ${masterName} ${downAfterMs}`,
            `sentinel failover-timeout ${masterName} ${failoverTimeoutMs}`,
            "",
          ].join("\n"),
        );
        const args = [config, "--sentinel", "--logfile", "", "--daemonize", "no"];
        return await spawn(args, `Redis Sentinel on port ${port}`, "Sentinel ID is", left());
      });
    }));

    await pollUntil(
      deadline,
      () => `${action}: the Sentinels do not see the master, its replicas and each other`,
      async () => {
        for (const { port } of sentinels) {
          const ready = await onNode(port, async (client) => {
            const master = fields(await client.call("SENTINEL", "MASTER", masterName));
            const replicas = (await client.call("SENTINEL", "REPLICAS", masterName)) as unknown[];
            const others = (await client.call("SENTINEL", "SENTINELS", masterName)) as unknown[];
            return master.get("flags") === "master" &&
              replicas.filter((r) => fields(r).get("flags") === "slave").length === replicaCount &&
              others.filter((s) => fields(s).get("flags") === "sentinel").length ===
                sentinelCount - 1;
          });
          if (!ready) return undefined;
        }
        return true;
      },
    );

    let current = master.port;
    const sentinelOptions = {
      sentinels: sentinels.map(({ port }) => ({ host: "127.0.0.1", port })),
      name: masterName,
    };
    return {
      masterName,
      master,
      replicas,
      sentinels: sentinels.map((sentinel) => ({
        host: "127.0.0.1",
        port: sentinel.port,
        get pid() {
          return sentinel.server?.child.pid ?? 0;
        },
      })),
      get sentinelOptions() {
        return {
          sentinels: sentinelOptions.sentinels.map((s) => ({ ...s })),
          name: masterName,
        };
      },
      killMaster: async () => {
        await servers.find(({ port }) => port === current)?.kill();
      },
      waitForFailover: async (wait = 20_000) => {
        const port = await pollUntil(
          Date.now() + wait,
          () => `Cannot see a failover: the Sentinels report no new master after ${wait} ms`,
          async () => {
            const seen = new Set<string>();
            for (const { port } of sentinels) {
              const [host, reported] = await onNode(
                port,
                (client) => client.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName),
              ) as [string, string];
              seen.add(`${host}:${reported}`);
            }
            const [address] = seen;
            return seen.size === 1 && address !== `127.0.0.1:${current}`
              ? Number(address!.split(":")[1])
              : undefined;
          },
        );
        current = port;
        return { host: "127.0.0.1", port };
      },
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

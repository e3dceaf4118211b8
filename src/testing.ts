/**
 * Test helpers: a throwaway `redis-server` on a free loopback port, a Redis Cluster, or a
 * Sentinel setup, for your own tests and for sluice's. Needs `redis-server` on PATH (and
 * `redis-cli` for a Cluster) and `--allow-run --allow-net --allow-write --allow-read` (or
 * `-A`).
 *
 * @example Test a task against a real Redis
 * ```ts
 * import { startRedis } from "@sluice/sluice/testing";
 * await using redis = await startRedis();
 * console.log(redis.url.startsWith("redis://127.0.0.1:")); // true
 * ```
 *
 * @module
 */
import { Redis } from "ioredis";

/** Options of {@linkcode startRedis}. */
export interface StartRedisOptions {
  /**
   * Persistence: `"none"` keeps nothing on disk, `"always"` is AOF with fsync on every write
   * (what fault tests use to check that nothing is lost across a restart), `"everysec"` is
   * AOF with fsync once a second.
   *
   * @default {"none"}
   */
  persistence?: "none" | "always" | "everysec";
  /**
   * The port; 0 picks a free one.
   *
   * @default {0}
   */
  port?: number;
  /** More `redis-server` arguments, e.g. `["--maxmemory", "10mb"]`. */
  args?: readonly string[];
  /**
   * How long to wait for the server to accept connections (ms).
   *
   * @default {10_000}
   */
  timeout?: number;
}

/** A running throwaway Redis. */
export interface TestRedis extends AsyncDisposable {
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** The port it listens on. */
  readonly port: number;
  /** The process id of the current server. */
  readonly pid: number;
  /** Shuts the server down (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Kills the server at once (SIGKILL), as a crash would, and waits for it to exit. */
  kill(): Promise<void>;
  /** Starts the server again on the same port and data directory. */
  restart(): Promise<void>;
}

interface Server {
  child: Deno.ChildProcess;
  drained: Promise<void>;
}

/**
 * Starts a `redis-server` on a free loopback port and waits until it accepts connections.
 * Dispose it (`await using`) or call `stop()` to shut it down and delete its data.
 *
 * @param options Persistence, port and extra arguments.
 * @returns The server's URL and controls.
 * @throws {Error} If `redis-server` is missing or does not become ready in time; the error
 * includes its last output.
 *
 * @example Kill and restart
 * ```ts
 * import { startRedis } from "@sluice/sluice/testing";
 * await using redis = await startRedis({ persistence: "always" });
 * await redis.kill();
 * await redis.restart();
 * console.log(redis.port > 0); // true
 * ```
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<TestRedis> {
  const { persistence = "none", args = [], timeout = 10_000 } = options;
  const dir = await Deno.makeTempDir({ prefix: "sluice-redis-" });
  let port = 0;
  let current: Server | undefined;
  try {
    [port, current] = await onFreePort(
      options.port || undefined,
      (chosen) => launch(chosen, dir, persistence, args, timeout),
    );
  } catch (err) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }

  const end = async (signal: Deno.Signal) => {
    const server = current;
    current = undefined;
    await halt(server, signal);
  };
  const stop = async () => {
    await end("SIGTERM");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get pid() {
      return current?.child.pid ?? 0;
    },
    stop,
    kill: () => end("SIGKILL"),
    restart: async () => {
      await end("SIGTERM");
      current = await launch(port, dir, persistence, args, timeout);
    },
    [Symbol.asyncDispose]: stop,
  };
}

/** Options of {@linkcode startCluster}. */
export interface StartClusterOptions {
  /**
   * How many masters share the 16384 hash slots; Redis Cluster needs at least 3.
   *
   * @default {3}
   */
  masters?: number;
  /**
   * How many replicas each master gets.
   *
   * @default {1}
   */
  replicasPerMaster?: number;
  /**
   * Persistence of every node, as in {@linkcode StartRedisOptions.persistence}.
   *
   * @default {"none"}
   */
  persistence?: "none" | "always" | "everysec";
  /**
   * `cluster-node-timeout` (ms): how long a node may be unreachable before it counts as
   * failing. Short, so that a replica takes over from a killed master within seconds.
   *
   * @default {1000}
   */
  nodeTimeout?: number;
  /**
   * How long to wait for the nodes to start and the cluster to become ok (ms).
   *
   * @default {30_000}
   */
  timeout?: number;
}

/** One node of a {@linkcode TestCluster}: a {@linkcode TestRedis} with its first role. */
export interface TestClusterNode extends TestRedis {
  /** Its role when the cluster became ok; a failover may change it. */
  readonly role: "master" | "replica";
}

/** A running throwaway Redis Cluster. */
export interface TestCluster extends AsyncDisposable {
  /** Every node, masters and replicas, in the order they became ready. */
  readonly nodes: readonly TestClusterNode[];
  /** The `redis://127.0.0.1:<port>` URL of every node, in the order of `nodes`. */
  readonly urls: readonly string[];
  /**
   * Kills node `index` at once (SIGKILL), as a crash would, and waits for it to exit.
   *
   * @throws {RangeError} If there is no node `index`.
   */
  killNode(index: number): Promise<void>;
  /** Kills every node, waits for them to exit and deletes their data. */
  stop(): Promise<void>;
}

const SLOTS = 16384;
/** Replicas sync at once, not after the default 5 s wait for more replicas. */
const QUICK_SYNC = ["--repl-diskless-sync-delay", "0"];

/**
 * Starts a Redis Cluster on free loopback ports: `masters * (1 + replicasPerMaster)` nodes
 * started with `--cluster-enabled yes`, joined with `redis-cli --cluster create`. Resolves
 * once every node reports `cluster_state:ok` with all slots assigned, sees every other node,
 * and every replica is in sync with its master. Dispose it (`await using`) or call `stop()`.
 *
 * @param options Shape of the cluster, persistence and timeouts.
 * @returns The nodes, their URLs and controls.
 * @throws {RangeError} If `masters` is below 3 or `replicasPerMaster` below 0.
 * @throws {Error} If `redis-server` or `redis-cli` is missing, or the cluster is not ok in time.
 *
 * @example Write through an ioredis Cluster client
 * ```ts
 * import { startCluster } from "@sluice/sluice/testing";
 * import { Cluster } from "ioredis";
 *
 * await using cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
 * const client = new Cluster(cluster.nodes.map(({ port }) => ({ host: "127.0.0.1", port })));
 * try {
 *   await client.set("{user:1}:name", "Ada");
 *   console.log(await client.get("{user:1}:name")); // "Ada"
 * } finally {
 *   await client.quit();
 * }
 * ```
 */
export async function startCluster(options: StartClusterOptions = {}): Promise<TestCluster> {
  const {
    masters = 3,
    replicasPerMaster = 1,
    persistence = "none",
    nodeTimeout = 1000,
    timeout = 30_000,
  } = options;
  if (!Number.isInteger(masters) || masters < 3) {
    throw new RangeError(
      `Cannot start a Redis Cluster as masters must be an integer >= 3: current value is ${masters}`,
    );
  }
  if (!Number.isInteger(replicasPerMaster) || replicasPerMaster < 0) {
    throw new RangeError(
      "Cannot start a Redis Cluster as replicasPerMaster must be an integer >= 0: " +
        `current value is ${replicasPerMaster}`,
    );
  }
  const deadline = Date.now() + timeout;
  await requireRedisCli();

  const servers: TestRedis[] = [];
  const stop = async () => {
    await Promise.all(servers.map(async (server) => {
      await server.kill();
      await server.stop();
    }));
  };
  try {
    const started = await Promise.allSettled(
      Array.from({ length: masters * (1 + replicasPerMaster) }, async () => {
        const server = await startClusterNode(persistence, nodeTimeout, deadline - Date.now());
        servers.push(server);
        return server;
      }),
    );
    const failed = started.find((result) => result.status === "rejected");
    if (failed) throw failed.reason;

    const create = ["--cluster", "create", ...servers.map(({ port }) => `127.0.0.1:${port}`)];
    create.push("--cluster-replicas", String(replicasPerMaster), "--cluster-yes");
    await redisCli(create, deadline);
    const roles = await clusterRoles(
      servers.map(({ port }) => port),
      masters,
      deadline,
      "Cannot start a Redis Cluster",
    );
    const nodes = servers.map((server, i) => Object.assign(server, { role: roles[i]! }));
    return {
      nodes,
      urls: nodes.map(({ url }) => url),
      killNode: async (index) => {
        const node = nodes[index];
        if (node === undefined) {
          throw new RangeError(
            `Cannot kill a cluster node as index must be in [0, ${nodes.length}): ` +
              `current value is ${index}`,
          );
        }
        await node.kill();
      },
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Starts one cluster node, with its bus on a second free port. */
async function startClusterNode(
  persistence: "none" | "always" | "everysec",
  nodeTimeout: number,
  timeout: number,
): Promise<TestRedis> {
  for (let tries = 0;; tries++) {
    const args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"];
    // The default bus port (port + 10000) may be taken or beyond 65535.
    args.push("--cluster-port", String(freePort()), "--cluster-node-timeout", String(nodeTimeout));
    // Let any replica take over, however long ago it last heard from its master.
    args.push("--cluster-replica-validity-factor", "0", ...QUICK_SYNC);
    try {
      return await startRedis({ persistence, args, timeout: Math.max(timeout, 1) });
    } catch (err) {
      if (tries >= 4 || !String(err).includes("Address already in use")) throw err;
    }
  }
}

/**
 * Waits until every node on `ports` reports the cluster ok with every slot served by
 * `masters` masters, knows every node and, if a replica, is in sync. Resolves to the role of
 * each node.
 */
function clusterRoles(
  ports: readonly number[],
  masters: number,
  deadline: number,
  action: string,
): Promise<("master" | "replica")[]> {
  return pollUntil(deadline, () => `${action}: the cluster is not ok`, async () => {
    const roles: ("master" | "replica")[] = [];
    for (const port of ports) {
      const role = await onNode(port, async (client) => {
        const info = fields(String(await client.call("CLUSTER", "INFO")), ":");
        if (
          info.get("cluster_state") !== "ok" ||
          info.get("cluster_slots_assigned") !== String(SLOTS) ||
          info.get("cluster_known_nodes") !== String(ports.length)
        ) return undefined;
        const nodes = String(await client.call("CLUSTER", "NODES")).trim().split("\n");
        const flags = nodes.map((line) => line.split(" ")[2]!.split(","));
        if (flags.some((f) => f.some((flag) => /fail|handshake|noaddr/.test(flag)))) {
          return undefined;
        }
        if (flags.filter((f) => f.includes("master")).length !== masters) return undefined;
        const myself = flags.find((f) => f.includes("myself"))!;
        if (myself.includes("master")) return "master";
        const replication = fields(String(await client.call("INFO", "replication")), ":");
        return replication.get("master_link_status") === "up" ? "replica" : undefined;
      });
      if (role === undefined) return undefined;
      roles.push(role);
    }
    return roles;
  });
}

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

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * Runs `start` on `port`, or on a free port, trying again with another one when a process took
 * it between our check and the bind. Resolves to the port used and what `start` returned.
 */
async function onFreePort<T>(
  port: number | undefined,
  start: (port: number) => Promise<T>,
): Promise<[number, T]> {
  for (let tries = 0;; tries++) {
    const chosen = port ?? freePort();
    try {
      return [chosen, await start(chosen)];
    } catch (err) {
      if (port !== undefined || tries >= 4 || !String(err).includes("Address already in use")) {
        throw err;
      }
    }
  }
}

/** Signals a server (if it still runs) and waits until it has exited and its output is read. */
async function halt(server: Server | undefined, signal: Deno.Signal): Promise<void> {
  if (server === undefined) return;
  try {
    server.child.kill(signal);
  } catch {
    // already gone
  }
  await Promise.all([server.child.status, server.drained]);
}

async function launch(
  port: number,
  dir: string,
  persistence: "none" | "always" | "everysec",
  extra: readonly string[],
  timeout: number,
): Promise<Server> {
  const aof = persistence === "none"
    ? ["--appendonly", "no"]
    : ["--appendonly", "yes", "--appendfsync", persistence];
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", ""];
  args.push(...aof, "--logfile", "", "--daemonize", "no", ...extra);
  return await spawn(args, `redis-server on port ${port}`, "Ready to accept connections", timeout);
}

/**
 * Spawns `redis-server` with `args` and resolves once a line of its log contains `readyLine`.
 * `what` names the server in error messages.
 */
async function spawn(
  args: readonly string[],
  what: string,
  readyLine: string,
  timeout: number,
): Promise<Server> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("redis-server", {
      args: [...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    throw new Error(
      `Cannot start redis-server: ${
        err instanceof Deno.errors.NotFound ? "it is not on PATH" : String(err)
      }`,
      { cause: err },
    );
  }
  // Read the log until the server says it is ready, then keep draining so it never blocks.
  const lines: string[] = [];
  const ready = Promise.withResolvers<void>();
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const line of stream.pipeThrough(new TextDecoderStream()).pipeThrough(lines_())) {
      if (lines.length < 200) lines.push(line);
      if (line.includes(readyLine)) ready.resolve();
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]).then(() => {});
  const exited = child.status.then((status) => {
    throw new Error(
      `Cannot start ${what}: it exited with code ${status.code}:\n${lines.slice(-20).join("\n")}`,
    );
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `Cannot start ${what}: not ready after ${timeout} ms:\n${lines.slice(-20).join("\n")}`,
          ),
        ),
      timeout,
    );
  });
  try {
    await Promise.race([ready.promise, exited, late]);
  } catch (err) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await Promise.allSettled([child.status, drained]);
    throw err;
  } finally {
    clearTimeout(timer);
  }
  exited.catch(() => {});
  return { child, drained };
}

function lines_(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, controller) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const part of parts) controller.enqueue(part);
    },
    flush(controller) {
      if (rest) controller.enqueue(rest);
    },
  });
}

/** Throws a clear error if `redis-cli` is not on PATH. */
async function requireRedisCli(): Promise<void> {
  try {
    await new Deno.Command("redis-cli", { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    throw new Error(
      "Cannot start a Redis Cluster: redis-cli is not on PATH; install it with Redis " +
        "(on Debian and Ubuntu: apt-get install redis-tools)",
      { cause: err },
    );
  }
}

/** Runs `redis-cli` with `args`, killing it at `deadline`; throws with its output if it fails. */
async function redisCli(args: readonly string[], deadline: number): Promise<void> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), Math.max(deadline - Date.now(), 1));
  try {
    const { success, code, stdout, stderr } = await new Deno.Command("redis-cli", {
      args: [...args],
      stdin: "null",
      signal: abort.signal,
    }).output();
    if (!success) {
      const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes).trim();
      throw new Error(
        `Cannot run redis-cli ${args.slice(0, 2).join(" ")}: it exited with code ${code}` +
          `${abort.signal.aborted ? " (timed out)" : ""}:\n${decode(stdout)}\n${decode(stderr)}`,
      );
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Calls `check` until it resolves to something other than `undefined`, a moment apart, and
 * resolves to that. Throws `message()` (with the last error `check` threw) after `deadline`.
 */
async function pollUntil<T>(
  deadline: number,
  message: () => string,
  check: () => Promise<T | undefined>,
): Promise<T> {
  for (;;) {
    let last: unknown;
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      throw new Error(last === undefined ? message() : `${message()}: ${last}`, { cause: last });
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Opens a connection to the server on `port`, runs `fn` with it and closes it. */
async function onNode<T>(port: number, fn: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({
    host: "127.0.0.1",
    port,
    lazyConnect: true,
    enableReadyCheck: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 2000,
  });
  client.on("error", () => {});
  try {
    await client.connect();
    return await fn(client);
  } finally {
    await client.quit().catch(() => client.disconnect());
  }
}

/**
 * Reads `key<sep>value` lines (CLUSTER INFO, INFO) or a flat `[key, value, ...]` reply
 * (SENTINEL MASTER) into a map.
 */
function fields(reply: unknown, sep = ":"): Map<string, string> {
  const map = new Map<string, string>();
  if (Array.isArray(reply)) {
    for (let i = 0; i + 1 < reply.length; i += 2) map.set(String(reply[i]), String(reply[i + 1]));
  } else {
    for (const line of String(reply).split(/\r?\n/)) {
      const at = line.indexOf(sep);
      if (at > 0) map.set(line.slice(0, at), line.slice(at + 1));
    }
  }
  return map;
}

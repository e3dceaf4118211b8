/**
 * `startCluster()`: a throwaway Redis Cluster on loopback, joined with `redis-cli`.
 *
 * @module
 */
import {
  fields,
  freePort,
  onNode,
  pollUntil,
  QUICK_SYNC,
  redisCli,
  requireRedisCli,
} from "./_process.ts";
import { startRedis, type TestRedis } from "./redis.ts";

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

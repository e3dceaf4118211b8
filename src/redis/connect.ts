/**
 * Redis connections, one per role. Per Redis it talks to, a process holds one `command`
 * connection and one `subscriber`, shared by every Queue, Worker, consumer and job handle in
 * it, plus one `blocking` connection per consumer: a plain Worker holds 3. On Redis Cluster the
 * command role is an ioredis `Cluster` (a connection per master), and there is one subscriber
 * per slot in use (see pubsub.ts); a consumer's blocking connection goes to its queue's master.
 *
 * @module
 */
import { type Cluster, Redis, type RedisOptions } from "ioredis";
import { defineScripts, type ScriptClient } from "../scripts/mod.ts";
import { clusterWire, PubSub, singleWire } from "./pubsub.ts";
import { retryWait } from "../backoff.ts";
import { track } from "./health.ts";
import { describeRedis, isCluster } from "./config.ts";
import { openCluster, SlotLink } from "./cluster.ts";
import type { Logger } from "../_log.ts";

/**
 * Connection options, handed to ioredis as they are: any ioredis `RedisOptions` field works,
 * Sentinel's `sentinels` and `name` included. The common ones are listed. A name ioredis does
 * not know is refused up front (a typo would otherwise be ignored and the default Redis used),
 * and so is `keyPrefix` (use the queue's `prefix`). For Redis Cluster see `RedisClusterConfig`.
 */
export interface RedisConnectionOptions {
  /** Host name. @default {"127.0.0.1"} */
  host?: string;
  /** Port. @default {6379} */
  port?: number;
  /** ACL user name. */
  username?: string;
  /** Password. */
  password?: string;
  /** Database index. @default {0} */
  db?: number;
  /** TLS options; `{}` turns TLS on with defaults. */
  tls?: Record<string, unknown>;
  /** Sentinel nodes, with `name` the master group. */
  sentinels?: { host: string; port: number }[];
  /** The Sentinel master group name. */
  name?: string;
  /** Any other ioredis `RedisOptions` field. */
  [option: string]: unknown;
}

/**
 * A Redis Cluster: some of its nodes (ioredis finds the rest), and ioredis `ClusterOptions`.
 * Every key of a queue carries the hash tag `{<queue>}`, so each queue lives on one slot, on
 * one master: its blocking reads and its sharded pub/sub (SSUBSCRIBE) go to that master, and
 * follow the slot when a failover or a resharding moves it.
 */
export interface RedisClusterConfig {
  /** Nodes to start from: `redis://` URLs or `{ host, port }`. */
  cluster: (string | { host?: string; port: number })[];
  /**
   * ioredis `ClusterOptions`; per-node settings (password, tls, username) go in
   * `redisOptions`. Refused: `scaleReads` (a queue's reads go to its master) and `keyPrefix`.
   */
  options?: { redisOptions?: RedisConnectionOptions; [option: string]: unknown };
}

/**
 * Where Redis is: a `redis://` or `rediss://` URL, a Unix socket path (`/run/redis.sock`),
 * connection options (Sentinel's included), or a Redis Cluster.
 */
export type RedisConfig = string | RedisConnectionOptions | RedisClusterConfig;

/** The roles a connection can play; one connection each. */
export type Role = "command" | "blocking" | "subscriber";

/** The machine's hostname, or undefined without the permission to read it (--allow-sys). */
export function hostname(): string | undefined {
  try {
    return Deno.hostname();
  } catch {
    return undefined;
  }
}

/** `<host>-<pid>`: names this process in consumer and connection names. */
export function processName(): string {
  // Without a hostname, the pid (and a consumer's random part) keep names apart.
  return `${hostname() ?? "host"}-${Deno.pid}`;
}

/** The default Redis URL. */
export const DEFAULT_REDIS = "redis://127.0.0.1:6379";

/**
 * Opens a lazily connecting ioredis client for one role, with sluice's scripts defined on it.
 * Connection errors are left to the caller's error handling; ioredis reconnects with backoff.
 * On Redis Cluster only the command role has such a client (an ioredis `Cluster`, typed as
 * the `Redis` whose commands it carries): blocking reads and subscriptions go through
 * `blockingLine()` and the shared `PubSub`.
 */
export function connect(config: RedisConfig, role: Role, name: string): ScriptClient {
  const options = roleOptions(role, name);
  if (isCluster(config)) {
    if (role !== "command") throw new Error(`sluice: no ${role} client on Redis Cluster`);
    const cluster = openCluster(config, options.connectionName!);
    track(cluster as unknown as Redis);
    return defineScripts(cluster as unknown as Redis, true);
  }
  if (typeof config !== "string" && Array.isArray(config.sentinels)) {
    // Sentinel: leave the old master as soon as the Sentinels announce a new one
    // (+switch-master), not when the old one dies or, if it lives on (a partition, a manual
    // failover), when the Sentinels demote it about 10 s later: writes meanwhile would go to a
    // master about to drop them. Costs one connection to each Sentinel per client.
    options.failoverDetector = true;
  }
  const client = typeof config === "string" ? new Redis(config, options) : new Redis({
    ...options,
    ...(config as RedisOptions),
    ...pick(options, "lazyConnect", "connectionName"),
  });
  // ioredis emits "error" on every failed reconnect; callers see failures through commands,
  // and enqueue reports the last one (see whenReady in health.ts).
  track(client);
  return defineScripts(client);
}

/** The connection options of a role. */
function roleOptions(role: Role, name: string): RedisOptions {
  const options: RedisOptions = {
    lazyConnect: true,
    connectionName: `sluice:${role}:${name}`,
    // Reconnect with capped exponential backoff, forever: a worker outlives Redis restarts.
    retryStrategy: (times) => retryWait(50, times, 2_000),
  };
  if (role === "blocking") {
    // A blocking read must not be replayed after a reconnect: the read loop decides what to send.
    options.autoResendUnfulfilledCommands = false;
    options.maxRetriesPerRequest = 0;
  }
  if (role === "subscriber") {
    // ioredis sends SUBSCRIBE at once while its ready check (INFO) is under way, since Redis
    // takes it while loading; the INFO then fails on a connection in subscriber mode, and the
    // connection drops. Many subscribers share this connection, so that race is common: the
    // subscriber skips the ready check (pub/sub has nothing to wait for while Redis loads).
    options.enableReadyCheck = false;
  }
  return options;
}

/** A consumer's connection for blocking reads, and the way to cut a read short. */
export interface BlockingLine {
  /** The connection for the next read (on Redis Cluster, to the queue's master now). */
  connection(): Promise<Redis>;
  /** Sends CLIENT UNBLOCK for connection `id`, to the Redis (or node) that holds it. */
  unblock(id: number): Promise<void>;
  /** A read failed with `err`: on Redis Cluster, look where the queue's slot lives now. */
  failed(err: unknown): void;
  /** Drops the connection at once: the last resort to end a read. */
  disconnect(): void;
  /** Closes the connection. */
  close(): Promise<void>;
}

/**
 * The blocking connection of a consumer named `name` of the queue whose stream is `key`:
 * its own connection to the Redis `command` talks to (on Redis Cluster, to the master that
 * owns the key's slot).
 */
export function blockingLine(
  config: RedisConfig,
  command: ScriptClient,
  key: string,
  name: string,
): BlockingLine {
  if (isCluster(config)) {
    const link = new SlotLink(command as unknown as Cluster, key, roleOptions("blocking", name));
    return {
      connection: () => link.connection(),
      unblock: async (id) => {
        if (!await link.unblock(id).catch(() => false)) link.current?.disconnect();
      },
      failed: (err) => link.failed(err),
      disconnect: () => link.current?.disconnect(),
      close: () => link.close(),
    };
  }
  const connection = connect(config, "blocking", name);
  return {
    connection: () => Promise.resolve(connection),
    unblock: async (id) => {
      await command.client("UNBLOCK", id);
    },
    failed: () => {},
    disconnect: () => connection.disconnect(),
    close: () => close(connection),
  };
}

/** Closes a client politely if it is connected, and at once otherwise. Never throws. */
export async function close(client: Redis): Promise<void> {
  if (client.status === "ready") {
    try {
      await client.quit();
    } catch {
      // a hard disconnect, below
    }
  }
  // After QUIT too: it ends the connection but not ioredis's Sentinel failover detector.
  client.disconnect();
}

/**
 * Redis's `maxmemory-policy`, or undefined if it cannot be read (CONFIG is disabled on many
 * managed services).
 */
export async function evictionPolicy(client: Redis): Promise<string | undefined> {
  try {
    const reply = await client.config("GET", "maxmemory-policy") as string[];
    return reply[1];
  } catch {
    return undefined;
  }
}

/** The connections a process shares for one Redis. Release it once done. */
export interface SharedRedis {
  /** Scripts, writes and reads that do not block. */
  readonly command: ScriptClient;
  /** Every subscription of the process on this Redis. */
  readonly pubsub: PubSub;
  /** Stops sharing; the last user closes both connections. */
  release(): Promise<void>;
}

interface Entry {
  command: ScriptClient;
  pubsub: PubSub;
  users: number;
}

const shared = new Map<unknown, Entry>();

/**
 * The process's shared connections to the Redis that `config` names. Configs that are the same
 * URL, or options with the same JSON, share; options with functions in them share by identity.
 * Nothing connects until first used. Outages are logged to the first user's `logger`, once
 * each.
 */
export function share(config: RedisConfig, logger?: Logger): SharedRedis {
  const key = shareKey(config);
  let entry = shared.get(key);
  if (entry === undefined) {
    const name = processName();
    const command = connect(config, "command", name);
    const pubsub = new PubSub(
      isCluster(config)
        ? clusterWire(command as unknown as Cluster, roleOptions("subscriber", name))
        : singleWire(connect(config, "subscriber", name)),
    );
    if (logger !== undefined) logOutages(command, logger, describeRedis(config));
    entry = { command, pubsub, users: 0 };
    shared.set(key, entry);
  }
  entry.users++;
  const mine = entry;
  let released = false;
  return {
    command: mine.command,
    pubsub: mine.pubsub,
    release: async () => {
      if (released) return;
      released = true;
      if (--mine.users > 0) return;
      if (shared.get(key) === mine) shared.delete(key);
      await Promise.all([close(mine.command), mine.pubsub.close()]);
    },
  };
}

/** One line per outage, not one per reconnect attempt; commands wait and are retried. */
function logOutages(client: Redis, logger: Logger, where: string): void {
  let down = false;
  client.on("error", (err: Error) => {
    if (down || client.status === "ready") return;
    down = true;
    logger.warn(
      `sluice: cannot reach Redis at ${where} (${err.message}); reconnecting with backoff (commands wait, and fail after about 20 attempts)`,
    );
  });
  client.on("ready", () => {
    if (!down) return;
    down = false;
    logger.warn(`sluice: Redis is reachable again (${where})`);
  });
}

function shareKey(config: RedisConfig): unknown {
  if (typeof config === "string") return config;
  let functions = false;
  const json = JSON.stringify(config, (_key, value) => {
    if (typeof value === "function") functions = true;
    return value;
  });
  return functions ? config : json;
}

function pick<T extends object, K extends keyof T>(obj: T, ...keys: K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const key of keys) out[key] = obj[key];
  return out;
}

export { checkRedisConfig, describeRedis } from "./config.ts";

/**
 * The \`redis\` option checked up front (a typo would otherwise be ignored and the default Redis
 * used), and where a config points, for messages.
 *
 * @module
 */
import { show } from "../_options.ts";
import type { RedisClusterConfig, RedisConfig } from "./connect.ts";

/**
 * The option names ioredis's `RedisOptions` documents (its common, standalone and Sentinel
 * options), written out here so that a typo is caught instead of ignored.
 */
const KNOWN_OPTIONS: ReadonlySet<string> = new Set([
  // where and who
  ..."host port path family tls username password db".split(" "),
  // Sentinel
  ..."sentinels name role sentinelUsername sentinelPassword sentinelTLS".split(" "),
  ..."enableTLSForSentinelMode sentinelRetryStrategy sentinelReconnectStrategy".split(" "),
  ..."sentinelCommandTimeout sentinelMaxConnections preferredSlaves natMap".split(" "),
  ..."updateSentinels failoverDetector".split(" "),
  // connecting and reconnecting
  ..."connectTimeout disconnectTimeout commandTimeout socketTimeout blockingTimeout".split(" "),
  ..."blockingTimeoutGrace keepAlive noDelay retryStrategy reconnectOnError".split(" "),
  ..."maxRetriesPerRequest maxLoadingRetryTime enableReadyCheck enableOfflineQueue".split(" "),
  ..."offlineQueue commandQueue autoResubscribe autoResendUnfulfilledCommands".split(" "),
  ..."lazyConnect Connector".split(" "),
  // the client itself
  ..."connectionName disableClientInfo clientInfoTag readOnly stringNumbers monitor".split(" "),
  ..."enableAutoPipelining autoPipeliningIgnoredCommands scripts showFriendlyErrorStack"
    .split(" "),
]);

/**
 * The option names ioredis's `ClusterOptions` documents, bar those sluice sets itself
 * (`lazyConnect`, `shardedSubscribers`) and `scaleReads` (reads of a queue go to its master).
 */
const KNOWN_CLUSTER_OPTIONS: ReadonlySet<string> = new Set([
  ..."redisOptions clusterRetryStrategy enableOfflineQueue enableReadyCheck".split(" "),
  ..."maxRedirections retryDelayOnMoved retryDelayOnFailover retryDelayOnClusterDown".split(" "),
  ..."retryDelayOnTryAgain slotsRefreshTimeout slotsRefreshInterval natMap dnsLookup".split(" "),
  ..."useSRVRecords resolveSrv enableAutoPipelining autoPipeliningIgnoredCommands".split(" "),
]);

/** Options sluice cannot honour (or that look like one), and what to do instead. */
const REFUSED_OPTIONS: Readonly<Record<string, string>> = {
  cluster: "redis.cluster goes with no other option but redis.options (the ioredis Cluster " +
    "options, with per-node settings such as password in options.redisOptions)",
  keyPrefix: "redis.keyPrefix is not supported: ioredis would prefix the keys a command " +
    "names, not those in script arguments and pub/sub channels; use the queue's prefix option",
  scaleReads: "redis.options.scaleReads is not supported: a queue's reads take jobs (they " +
    "write), so every command of a queue goes to the master that owns its slot",
  url: 'redis.url is not an ioredis option: give the URL as redis itself (redis: "redis://...")',
};

/**
 * Checks a `redis` option up front: a string must be a `redis://` or `rediss://` URL that
 * parses, or a Unix socket path; an object may hold only ioredis `RedisOptions` fields.
 *
 * @param action What was being done, e.g. "Cannot create queue".
 * @param config The `redis` option as given.
 * @throws {TypeError} Naming the action, the problem and the value: an unknown option (with
 * the closest known name, or the list of them), `cluster`, or a URL that is not one.
 *
 * @example A typo is caught
 * ```ts
 * import { checkRedisConfig } from "./config.ts";
 * try {
 *   checkRedisConfig("Cannot create queue", { hots: "10.0.0.5" });
 * } catch (err) {
 *   // Cannot create queue: redis has an unknown option "hots" (did you mean "host"?)
 *   console.log((err as Error).message);
 * }
 * ```
 */
export function checkRedisConfig(action: string, config: unknown): asserts config is RedisConfig {
  if (typeof config === "string") return checkRedisUrl(action, config);
  if (Array.isArray(config)) {
    throw new TypeError(
      `${action}: redis must be a URL or ioredis options, got an array (for Redis Cluster, ` +
        `give redis: { cluster: [...node URLs] })`,
    );
  }
  if (typeof config !== "object" || config === null) {
    throw new TypeError(`${action}: redis must be a URL or ioredis options, got ${show(config)}`);
  }
  if ("cluster" in config) return checkClusterConfig(action, config as Record<string, unknown>);
  checkKeys(action, "redis", config, KNOWN_OPTIONS);
}

/** Every key of `options` must be in `known`: else the closest name, or the list. */
function checkKeys(action: string, what: string, options: object, known: ReadonlySet<string>) {
  for (const key of Object.keys(options)) {
    if (known.has(key)) continue;
    const refused = what === "redis" || key === "keyPrefix" || key === "scaleReads"
      ? REFUSED_OPTIONS[key]
      : undefined;
    if (refused !== undefined) throw new TypeError(`${action}: ${refused}`);
    const near = closest(key, known);
    throw new TypeError(
      `${action}: ${what} has an unknown option ${JSON.stringify(key)} (${
        near === undefined
          ? `known: ${[...known].join(", ")}`
          : `did you mean ${JSON.stringify(near)}?`
      })`,
    );
  }
}

function checkClusterConfig(action: string, config: Record<string, unknown>): void {
  for (const key of Object.keys(config)) {
    if (key !== "cluster" && key !== "options") {
      throw new TypeError(
        `${action}: redis.cluster goes with no other option but redis.options, got ${
          JSON.stringify(key)
        } (per-node settings such as password go in options.redisOptions)`,
      );
    }
  }
  const nodes = config.cluster;
  if (!Array.isArray(nodes) || nodes.length === 0) {
    throw new TypeError(
      `${action}: redis.cluster must be a non-empty array of node URLs or { host, port }, got ${
        show(nodes)
      }`,
    );
  }
  nodes.forEach((node, i) => {
    if (typeof node === "string" && !node.startsWith("/")) {
      return checkRedisUrl(action, node, `redis.cluster[${i}]`);
    }
    const ok = typeof node === "object" && node !== null && !Array.isArray(node) &&
      (node.host === undefined || typeof node.host === "string") &&
      Number.isInteger(node.port) && node.port > 0 && node.port < 65536;
    if (!ok) {
      throw new TypeError(
        `${action}: redis.cluster[${i}] must be a redis:// URL or { host, port } with port ` +
          `1 to 65535, got ${show(node)}`,
      );
    }
  });
  const options = config.options;
  if (options === undefined) return;
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(
      `${action}: redis.options must be ioredis Cluster options, got ${show(options)}`,
    );
  }
  checkKeys(action, "redis.options", options, KNOWN_CLUSTER_OPTIONS);
  const nodeOptions = (options as Record<string, unknown>).redisOptions;
  if (nodeOptions === undefined) return;
  if (typeof nodeOptions !== "object" || nodeOptions === null || Array.isArray(nodeOptions)) {
    throw new TypeError(
      `${action}: redis.options.redisOptions must be ioredis options, got ${show(nodeOptions)}`,
    );
  }
  checkKeys(action, "redis.options.redisOptions", nodeOptions, KNOWN_OPTIONS);
}

function checkRedisUrl(action: string, url: string, what = "redis"): void {
  // ioredis takes an absolute path as a Unix socket.
  if (url.startsWith("/") && !url.startsWith("//")) return;
  let protocol: string | undefined;
  try {
    protocol = new URL(url).protocol;
  } catch {
    // not a URL: said below
  }
  if (protocol === "redis:" || protocol === "rediss:") return;
  const socket = protocol === "unix:"
    ? `; for a Unix socket give its path, e.g. "${new URL(url).pathname}"`
    : "";
  throw new TypeError(
    `${action}: ${what} must be a redis:// or rediss:// URL, or a socket path, got ${
      show(hidePassword(url))
    }${socket}`,
  );
}

/** The known name nearest to `key`, if it is near enough to be a typo of it. */
function closest(key: string, known: Iterable<string>): string | undefined {
  // One edit per three characters, from 1 to 3: "hots" finds "host", "x" finds nothing.
  const allowed = Math.max(1, Math.min(3, Math.floor(key.length / 3)));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of known) {
    const distance = editDistance(key.toLowerCase(), name.toLowerCase());
    if (distance <= allowed && distance < bestDistance) {
      best = name;
      bestDistance = distance;
    }
  }
  return best;
}

/** Levenshtein distance, with an adjacent swap counted as one edit. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      }
      row.push(d);
    }
    rows.push(row);
  }
  return rows[a.length]![b.length]!;
}

function hidePassword(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, "//$1:***@");
}

/**
 * Where a config points, for messages: `host:port`, a socket path, or the Sentinel master
 * group. Never the password.
 *
 * @example
 * ```ts
 * import { describeRedis } from "./config.ts";
 * console.log(describeRedis("redis://:secret@cache.internal:6380/2")); // "cache.internal:6380"
 * console.log(describeRedis({ sentinels: [{ host: "s1", port: 26379 }], name: "main" }));
 * // 'Sentinel master "main"'
 * console.log(describeRedis({ cluster: ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"] }));
 * // "Redis Cluster (10.0.0.1:7000, +1)"
 * ```
 */
export function describeRedis(config: RedisConfig): string {
  if (isCluster(config)) {
    const first = config.cluster[0]!;
    const more = config.cluster.length > 1 ? `, +${config.cluster.length - 1}` : "";
    return `Redis Cluster (${describeRedis(first)}${more})`;
  }
  if (typeof config === "string") {
    if (config.startsWith("/") && !config.startsWith("//")) return config.split("?")[0]!;
    try {
      const url = new URL(config);
      return `${url.hostname || "localhost"}:${url.port || "6379"}`;
    } catch {
      return "(an invalid URL)";
    }
  }
  if (Array.isArray(config.sentinels) && config.sentinels.length > 0) {
    return `Sentinel master ${JSON.stringify(config.name ?? "")}`;
  }
  if (typeof config.path === "string") return config.path;
  const host = config.host ?? "localhost";
  return `${host.includes(":") ? `[${host}]` : host}:${config.port ?? 6379}`;
}

/** True if `config` names a Redis Cluster. */
export function isCluster(config: RedisConfig): config is RedisClusterConfig {
  return typeof config === "object" && Array.isArray((config as RedisClusterConfig).cluster);
}

/**
 * Redis connections. A queue opens at most one connection per role: `command` for scripts
 * and writes, `blocking` for XREADGROUP BLOCK (opened by a consumer), and later `subscriber`
 * for pub/sub. So a process holds at most 3 connections per queue, whatever its concurrency.
 *
 * @module
 */
import { Redis, type RedisOptions } from "ioredis";
import { defineScripts, type ScriptClient } from "./scripts.ts";
import { retryWait } from "./backoff.ts";
import { show } from "./_options.ts";
import { abortable } from "./async.ts";

/**
 * Connection options, handed to ioredis as they are: any ioredis `RedisOptions` field works,
 * Sentinel's `sentinels` and `name` included. The common ones are listed. A name ioredis does
 * not know is refused up front (a typo would otherwise be ignored and the default Redis used),
 * and so are `cluster` (not supported yet) and `keyPrefix` (use the queue's `prefix`).
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
 * Where Redis is: a `redis://` or `rediss://` URL, a Unix socket path (`/run/redis.sock`), or
 * connection options.
 */
export type RedisConfig = string | RedisConnectionOptions;

/** The roles a connection can play; one connection each. */
export type Role = "command" | "blocking" | "subscriber";

/** `<host>-<pid>`: names this process in consumer and connection names. */
export function processName(): string {
  let host = "host";
  try {
    host = Deno.hostname();
  } catch {
    // no --allow-sys: the pid (and a consumer's random part) keep names apart
  }
  return `${host}-${Deno.pid}`;
}

/** The default Redis URL. */
export const DEFAULT_REDIS = "redis://127.0.0.1:6379";

/**
 * Opens a lazily connecting ioredis client for one role, with sluice's scripts defined on it.
 * Connection errors are left to the caller's error handling; ioredis reconnects with backoff.
 */
export function connect(config: RedisConfig, role: Role, name: string): ScriptClient {
  const base: RedisOptions = {
    lazyConnect: true,
    connectionName: `sluice:${role}:${name}`,
    // Reconnect with capped exponential backoff, forever: a worker outlives Redis restarts.
    retryStrategy: (times) => retryWait(50, times, 2_000),
  };
  if (role === "blocking") {
    // A blocking read must not be replayed after a reconnect: the read loop decides what to send.
    base.autoResendUnfulfilledCommands = false;
    base.maxRetriesPerRequest = 0;
  }
  const client = typeof config === "string" ? new Redis(config, base) : new Redis({
    ...base,
    ...(config as RedisOptions),
    ...pick(base, "lazyConnect", "connectionName"),
  });
  // ioredis emits "error" on every failed reconnect; callers see failures through commands,
  // and enqueue reports the last one (see whenReady).
  const health: Health = { lastError: undefined, failures: 0, everReady: false };
  healthOf.set(client, health);
  client.on("error", (err: Error) => {
    health.lastError = err;
    if (client.status !== "ready") health.failures++;
  });
  client.on("ready", () => {
    health.failures = 0;
    health.everReady = true;
  });
  return defineScripts(client);
}

/** Closes a client politely if it is connected, and at once otherwise. Never throws. */
export async function close(client: Redis): Promise<void> {
  if (client.status === "ready") {
    try {
      await client.quit();
      return;
    } catch {
      // fall through to a hard disconnect
    }
  }
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

function pick<T extends object, K extends keyof T>(obj: T, ...keys: K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const key of keys) out[key] = obj[key];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Checking the config up front

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

/** Options sluice cannot honour (or that look like one), and what to do instead. */
const REFUSED_OPTIONS: Readonly<Record<string, string>> = {
  cluster: "redis.cluster is not supported yet; give the URL or host and port of one Redis " +
    "(or a Sentinel setup with sentinels and name)",
  keyPrefix: "redis.keyPrefix is not supported: scripts build some keys themselves, so " +
    "they would miss it; use the queue's prefix option",
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
 * import { checkRedisConfig } from "./redis.ts";
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
      `${action}: redis must be a URL or ioredis options, got an array (a list of cluster ` +
        `nodes? Redis Cluster is not supported yet)`,
    );
  }
  if (typeof config !== "object" || config === null) {
    throw new TypeError(`${action}: redis must be a URL or ioredis options, got ${show(config)}`);
  }
  for (const key of Object.keys(config)) {
    if (KNOWN_OPTIONS.has(key)) continue;
    const refused = REFUSED_OPTIONS[key];
    if (refused !== undefined) throw new TypeError(`${action}: ${refused}`);
    const near = closest(key, KNOWN_OPTIONS);
    throw new TypeError(
      `${action}: redis has an unknown option ${JSON.stringify(key)} (${
        near === undefined
          ? `known: ${[...KNOWN_OPTIONS].join(", ")}`
          : `did you mean ${JSON.stringify(near)}?`
      })`,
    );
  }
}

function checkRedisUrl(action: string, url: string): void {
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
    `${action}: redis must be a redis:// or rediss:// URL, or a socket path, got ${
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
 * import { describeRedis } from "./redis.ts";
 * console.log(describeRedis("redis://:secret@cache.internal:6380/2")); // "cache.internal:6380"
 * console.log(describeRedis({ sentinels: [{ host: "s1", port: 26379 }], name: "main" }));
 * // 'Sentinel master "main"'
 * ```
 */
export function describeRedis(config: RedisConfig): string {
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

// ---------------------------------------------------------------------------------------------
// Connection health, for clear errors when Redis cannot be reached

/** What a client has seen of its connection. */
interface Health {
  /** The last connection error, if any. */
  lastError: Error | undefined;
  /** Failed connection attempts since the last "ready". */
  failures: number;
  /** True once the client has been ready. */
  everReady: boolean;
  /** Callers of whenReady() waiting for the first connection. */
  waiting?: Promise<Error | undefined> | undefined;
}

const healthOf = new WeakMap<Redis, Health>();

/**
 * How many failed attempts in a row (about 1.5 s of refused connections, with the reconnect
 * backoff above) make a client that never connected count as unreachable.
 */
const UNREACHABLE_AFTER = 5;

/**
 * The last connection error a client made by {@linkcode connect} has seen, if any.
 *
 * @example
 * ```ts
 * import { connect, lastConnectionError } from "./redis.ts";
 * const client = connect("redis://127.0.0.1:6379", "command", "doc");
 * console.log(lastConnectionError(client)); // undefined: it has not tried yet
 * client.disconnect();
 * ```
 */
export function lastConnectionError(client: Redis): Error | undefined {
  return healthOf.get(client)?.lastError;
}

/**
 * Waits until it makes sense to send commands on `client`:
 *
 * - at once if it is ready, or was ready before (ioredis then queues commands across the
 *   reconnect and fails them after `maxRetriesPerRequest` attempts, about 33 s by default:
 *   time for a restart or a failover);
 * - if it never connected, until it is ready, or it has failed `UNREACHABLE_AFTER` (5)
 *   attempts in a row (fewer if `maxRetriesPerRequest` is lower, never if it is `null`), or
 *   the client ended. Nothing waits in ioredis's queue meanwhile, so giving up writes nothing.
 *
 * @param client A client made by {@linkcode connect}; a lazy one is connected.
 * @param signal Stops the wait: the promise rejects with `signal.reason`.
 * @returns undefined when commands may be sent, or the connection error that says Redis
 * cannot be reached.
 *
 * @example
 * ```ts
 * import { connect, whenReady } from "./redis.ts";
 * const client = connect("redis://127.0.0.1:1", "command", "doc"); // nothing listens there
 * const err = await whenReady(client);
 * console.log((err as { code?: string })?.code); // "ECONNREFUSED"
 * client.disconnect();
 * ```
 */
export function whenReady(client: Redis, signal?: AbortSignal): Promise<Error | undefined> {
  const health = healthOf.get(client);
  if (client.status === "ready" || health === undefined || health.everReady) {
    return Promise.resolve(undefined);
  }
  const retries = client.options.maxRetriesPerRequest;
  const limit = typeof retries === "number" && retries >= 0
    ? Math.min(UNREACHABLE_AFTER, retries + 1)
    : retries === null
    ? Infinity
    : UNREACHABLE_AFTER;
  /** undefined: send; an Error: give up; null: wait on. */
  const verdict = (): Error | undefined | null => {
    if (client.status === "ready" || health.everReady) return undefined;
    if (client.status === "end" || health.failures >= limit) {
      return health.lastError ?? new Error("Connection is closed.");
    }
    return null;
  };
  const now = verdict();
  if (now !== null) return Promise.resolve(now);
  if (signal?.aborted) return Promise.reject(signal.reason);
  // One wait per client, shared by every caller: a burst of enqueues at start-up adds no
  // listeners per call (nor EventEmitter's too-many-listeners warning).
  health.waiting ??= new Promise<Error | undefined>((resolve) => {
    const check = () => {
      const found = verdict();
      if (found === null) return;
      client.off("ready", check).off("error", check).off("end", check);
      health.waiting = undefined;
      resolve(found);
    };
    client.on("ready", check).on("error", check).on("end", check);
    if (client.status === "wait") client.connect().catch(() => {});
  });
  return signal === undefined ? health.waiting : abortable(health.waiting, signal);
}

/**
 * True if a command failed because the connection was lost and did not come back in time:
 * ioredis's `MaxRetriesPerRequestError`, or "Connection is closed." from an ended client.
 *
 * @example
 * ```ts
 * import { isConnectionLoss } from "./redis.ts";
 * console.log(isConnectionLoss(new Error("Connection is closed."))); // true
 * ```
 */
export function isConnectionLoss(err: unknown): boolean {
  return err instanceof Error &&
    (err.name === "MaxRetriesPerRequestError" || err.message === "Connection is closed.");
}

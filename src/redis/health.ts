/**
 * Connection health: what a client has seen of its connection, so that an enqueue with Redis
 * unreachable fails soon with a clear error instead of waiting in ioredis's queue.
 *
 * @module
 */
import type { Redis } from "ioredis";
import { abortable } from "../async.ts";

/** Starts tracking a new client's connection (called by \`connect()\`). */
export function track(client: Redis): void {
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
}

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
 * The last connection error a client made by `connect()` has seen, if any.
 *
 * @example
 * ```ts
 * import { connect } from "./connect.ts";
 * import { lastConnectionError } from "./health.ts";
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
 * @param client A client made by `connect()`; a lazy one is connected.
 * @param signal Stops the wait: the promise rejects with `signal.reason`.
 * @returns undefined when commands may be sent, or the connection error that says Redis
 * cannot be reached.
 *
 * @example
 * ```ts
 * import { connect } from "./connect.ts";
 * import { whenReady } from "./health.ts";
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
 * import { isConnectionLoss } from "./health.ts";
 * console.log(isConnectionLoss(new Error("Connection is closed."))); // true
 * ```
 */
export function isConnectionLoss(err: unknown): boolean {
  return err instanceof Error &&
    (err.name === "MaxRetriesPerRequestError" || err.message === "Connection is closed.");
}

/**
 * True for what a failover, a slot move or a reconnect brings, and passes once Redis (or the
 * cluster) has settled: a lost connection, a redirection, a cluster, master or replica not
 * ready yet, ioredis's spent redirections.
 *
 * @example
 * ```ts
 * import { isPassing } from "./health.ts";
 * console.log(isPassing(new Error("MOVED 3999 127.0.0.1:7001"))); // true
 * console.log(isPassing(new Error("ERR wrong number of arguments"))); // false
 * ```
 */
export function isPassing(err: unknown): boolean {
  if (isConnectionLoss(err)) return true;
  const message = err instanceof Error ? err.message : String(err);
  return /^(MOVED|ASK|CLUSTERDOWN|TRYAGAIN|READONLY|MASTERDOWN|LOADING)\b|^Too many Cluster redirections|ECONN/
    .test(message);
}

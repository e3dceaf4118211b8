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

/**
 * Connection options, handed to ioredis as they are: any ioredis `RedisOptions` field works,
 * Sentinel's `sentinels` and `name` included. The common ones are listed.
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
  /** Any other ioredis option. */
  [option: string]: unknown;
}

/** Where Redis is: a `redis://` or `rediss://` URL, or connection options. */
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
  // ioredis emits "error" on every failed reconnect; callers see failures through commands.
  client.on("error", () => {});
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

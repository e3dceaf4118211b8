/**
 * `startRedis()`: a throwaway `redis-server` on a free loopback port.
 *
 * @module
 */
import { halt, launch, onFreePort, type Server } from "./_process.ts";

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

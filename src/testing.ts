/**
 * Test helpers: a throwaway `redis-server` on a free loopback port, for your own tests and for
 * sluice's. Needs `redis-server` on PATH and `--allow-run --allow-net --allow-write
 * --allow-read` (or `-A`).
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
  let port = options.port ?? 0;
  let server: Server | undefined;
  for (let tries = 0; server === undefined; tries++) {
    const chosen = port === 0 ? freePort() : port;
    try {
      server = await launch(chosen, dir, persistence, args, timeout);
      port = chosen;
    } catch (err) {
      // Another process may have taken the port between our check and the bind.
      if (options.port || tries >= 4 || !String(err).includes("Address already in use")) {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
        throw err;
      }
    }
  }
  let current: Server | undefined = server;

  const end = async (signal: Deno.Signal) => {
    if (current === undefined) return;
    const { child, drained } = current;
    current = undefined;
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
    await Promise.all([child.status, drained]);
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

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
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
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("redis-server", {
      args: [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        "--save",
        "",
        ...aof,
        "--logfile",
        "",
        "--daemonize",
        "no",
        ...extra,
      ],
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
      if (line.includes("Ready to accept connections")) ready.resolve();
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]).then(() => {});
  const exited = child.status.then((status) => {
    throw new Error(
      `Cannot start redis-server on port ${port}: it exited with code ${status.code}:\n${
        lines.slice(-20).join("\n")
      }`,
    );
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `Cannot start redis-server on port ${port}: not ready after ${timeout} ms:\n${
              lines.slice(-20).join("\n")
            }`,
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

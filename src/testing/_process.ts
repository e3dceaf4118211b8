/**
 * What the test helpers share: free ports, starting and stopping `redis-server` processes, and
 * waiting on Redis state with a deadline.
 *
 * @module
 */
import { Redis } from "ioredis";

/** A running `redis-server` process and the end of its output. */
export interface Server {
  child: Deno.ChildProcess;
  drained: Promise<void>;
}

export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * Runs `start` on `port`, or on a free port, trying again with another one when a process took
 * it between our check and the bind. Resolves to the port used and what `start` returned.
 */
export async function onFreePort<T>(
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
export async function halt(server: Server | undefined, signal: Deno.Signal): Promise<void> {
  if (server === undefined) return;
  try {
    server.child.kill(signal);
  } catch {
    // already gone
  }
  await Promise.all([server.child.status, server.drained]);
}

export async function launch(
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
export async function spawn(
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
  const exited = child.status.then(async (status) => {
    // The reason is in the last lines of the log ("Address already in use", which callers try
    // again on): read them all before saying why.
    await drained.catch(() => {});
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
export async function requireRedisCli(): Promise<void> {
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
export async function redisCli(args: readonly string[], deadline: number): Promise<void> {
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
export async function pollUntil<T>(
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
export async function onNode<T>(port: number, fn: (client: Redis) => Promise<T>): Promise<T> {
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
export function fields(reply: unknown, sep = ":"): Map<string, string> {
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

/** Replicas sync at once, not after the default 5 s wait for more replicas. */
export const QUICK_SYNC = ["--repl-diskless-sync-delay", "0"];

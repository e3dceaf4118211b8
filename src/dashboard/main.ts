/**
 * Runs the sluice dashboard as its own server:
 *
 * ```sh
 * deno run -A jsr:@sluice/sluice/dashboard --redis redis://127.0.0.1:6379 --port 8080
 * ```
 *
 * Options: `--redis URL` (or `REDIS_URL`), `--port` (8080), `--hostname` (127.0.0.1: only this
 * machine), `--token` (or `SLUICE_DASHBOARD_TOKEN`), `--read-only`, `--prefix`,
 * `--base-path`. It stops on SIGINT or SIGTERM.
 *
 * @example Serve on a free port, then stop
 * ```ts
 * import { serveDashboard } from "@sluice/sluice/dashboard";
 * import { startRedis } from "@sluice/sluice/testing";
 * await using redis = await startRedis();
 * const stop = new AbortController();
 * const server = await serveDashboard({ redis: redis.url, port: 0, signal: stop.signal });
 * const res = await fetch(server.url);
 * console.log(res.status); // 200
 * await res.body?.cancel();
 * stop.abort();
 * await server.finished;
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { dashboard, type DashboardOptions } from "./mod.ts";

export { dashboard } from "./mod.ts";
export type { DashboardHandler, DashboardOptions } from "./mod.ts";

/** Options of {@linkcode serveDashboard}. */
export interface ServeDashboardOptions extends DashboardOptions {
  /** The port; 0 picks a free one. @default {8080} */
  port?: number;
  /** The address to listen on. @default {"127.0.0.1"} */
  hostname?: string;
  /** Stops the server. */
  signal?: AbortSignal;
}

/** A running dashboard server. */
export interface DashboardServer {
  /** Its address, such as `http://127.0.0.1:8080/`. */
  url: string;
  /** Resolves once it has stopped and closed its connections. */
  finished: Promise<void>;
}

/**
 * Serves the dashboard until `signal` aborts.
 *
 * @example
 * ```ts
 * import { serveDashboard } from "@sluice/sluice/dashboard";
 * import { startRedis } from "@sluice/sluice/testing";
 * await using redis = await startRedis();
 * const stop = new AbortController();
 * const server = await serveDashboard({ redis: redis.url, port: 0, readOnly: true, signal: stop.signal });
 * console.log(server.url.startsWith("http://127.0.0.1:")); // true
 * stop.abort();
 * await server.finished;
 * ```
 *
 * @throws {TypeError} If an option is invalid.
 * @throws {RangeError} If the port is out of range.
 */
export async function serveDashboard(
  options: ServeDashboardOptions = {},
): Promise<DashboardServer> {
  const { port = 8080, hostname = "127.0.0.1", signal, ...rest } = options;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new RangeError(`Cannot serve the dashboard: port must be 0 to 65535, got ${port}`);
  }
  if (rest.token === undefined && !/^(localhost|127(\.\d{1,3}){3}|::1)$/.test(hostname)) {
    throw new TypeError(
      `Cannot serve the dashboard on ${hostname}: beyond this machine it needs a token (--token or SLUICE_DASHBOARD_TOKEN)`,
    );
  }
  const handler = dashboard(rest);
  const listening = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve(
    {
      port,
      hostname,
      ...(signal ? { signal } : {}),
      onListen: (addr) => listening.resolve(addr as Deno.NetAddr),
      onError: (err) => new Response(`Error: ${(err as Error).message}`, { status: 500 }),
    },
    handler,
  );
  const addr = await Promise.race([listening.promise, server.finished.then(() => undefined)]);
  const finished = server.finished.finally(() => handler.close());
  if (addr === undefined) {
    await finished;
    throw new Error(`Cannot serve the dashboard on ${hostname}:${port}`);
  }
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return { url: `http://${host}:${addr.port}${rest.basePath ?? ""}/`, finished };
}

/**
 * The command line's flags as options of {@linkcode serveDashboard}.
 *
 * @example
 * ```ts
 * import { dashboardOptions } from "@sluice/sluice/dashboard";
 * const options = dashboardOptions(["--port", "9000", "--read-only"]);
 * console.log(options.port, options.readOnly, options.hostname); // 9000 true "127.0.0.1"
 * ```
 */
export function dashboardOptions(args: string[]): ServeDashboardOptions {
  const { values } = parseArgs({
    args,
    options: {
      redis: { type: "string" },
      port: { type: "string" },
      hostname: { type: "string" },
      token: { type: "string" },
      "read-only": { type: "boolean" },
      prefix: { type: "string" },
      "base-path": { type: "string" },
    },
    strict: true,
  });
  const port = values.port === undefined ? 8080 : Number(values.port);
  if (!/^\d+$/.test(values.port ?? "8080") || port > 65_535) {
    throw new RangeError(`--port must be 0 to 65535, got ${JSON.stringify(values.port)}`);
  }
  const token = values.token ?? Deno.env.get("SLUICE_DASHBOARD_TOKEN");
  return {
    redis: values.redis ?? Deno.env.get("REDIS_URL") ?? "redis://127.0.0.1:6379",
    port,
    hostname: values.hostname ?? "127.0.0.1",
    readOnly: values["read-only"] === true,
    ...(token ? { token } : {}),
    ...(values.prefix ? { prefix: values.prefix } : {}),
    ...(values["base-path"] ? { basePath: values["base-path"] } : {}),
  };
}

if (import.meta.main) {
  const stop = new AbortController();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => stop.abort());
  }
  try {
    const server = await serveDashboard({ ...dashboardOptions(Deno.args), signal: stop.signal });
    // deno-lint-ignore no-console
    console.log(`sluice dashboard on ${server.url}`);
    await server.finished;
  } catch (err) {
    // deno-lint-ignore no-console
    console.error(`error: ${(err as Error).message}`);
    Deno.exit(err instanceof TypeError || err instanceof RangeError ? 2 : 1);
  }
}

/**
 * The sluice web dashboard: a request handler to mount in `Deno.serve`, Hono or Oak, or to run
 * on its own (`deno run -A jsr:@sluice/sluice/dashboard --redis URL --port 8080`).
 *
 * Pages are rendered on the server from the admin API, with a little vanilla JS: live updates
 * come over Server-Sent Events from `queue.events()` (one follower per queue, whatever the
 * number of open tabs), and actions are POSTs with a CSRF check. With a `token`, every request
 * needs it: `Authorization: Bearer <token>`, or the HttpOnly, SameSite=Strict cookie the login
 * page sets. Every value from Redis is HTML-escaped, and pages carry a Content Security Policy
 * that runs only their own script.
 *
 * @example Mount it in Deno.serve
 * ```ts
 * import { dashboard } from "@sluice/sluice/dashboard";
 * import { startRedis } from "@sluice/sluice/testing";
 * await using redis = await startRedis();
 * await using handler = dashboard({ redis: redis.url, basePath: "/admin/queues" });
 * const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, handler);
 * const res = await fetch(`http://127.0.0.1:${server.addr.port}/admin/queues/`);
 * console.log(res.status); // 200
 * await res.body?.cancel();
 * await server.shutdown();
 * ```
 *
 * @module
 */
import type { Queue } from "../queue.ts";
import { describeQueue, listQueues, queueFor } from "../queues.ts";
import { recordedLanes } from "../_scan.ts";
import { checkName, queueKeys } from "../keys.ts";
import { LIST_STATES, type ListState } from "../admin.ts";
import { checkRedisConfig, DEFAULT_REDIS, type RedisConfig, share } from "../redis/connect.ts";
import { show } from "../_options.ts";
import { type Html, page } from "./_html.ts";
import { hourSeries, LiveHub } from "./_live.ts";
import * as pages from "./pages.ts";

/** Options of {@linkcode dashboard}. */
export interface DashboardOptions {
  /** Where Redis is, as for `Queue`. @default {"redis://127.0.0.1:6379"} */
  redis?: RedisConfig;
  /** The path the dashboard is mounted under, such as `/admin/queues`. @default {""} */
  basePath?: string;
  /** The key prefix of the queues shown. @default {"sluice"} */
  prefix?: string;
  /** The consumer group counts are seen by. @default {"sluice"} */
  group?: string;
  /**
   * A secret every request must carry: `Authorization: Bearer <token>`, or the cookie the
   * login page sets. @default {undefined} (no check: bind to 127.0.0.1 only)
   */
  token?: string;
  /** Shows everything and changes nothing: no action buttons, and POSTs get 403. */
  readOnly?: boolean;
}

/** The dashboard's request handler; close it to release its connections. */
export type DashboardHandler = ((request: Request) => Promise<Response>) & AsyncDisposable & {
  /** Closes the queues and live streams it opened. */
  close(): Promise<void>;
};

type Params = Record<string, string>;
type Route = [
  method: string,
  pattern: URLPattern,
  run: (req: Request, p: Params, url: URL) => Promise<Response>,
];

const COOKIE = "sluice_dashboard";

/** Names of this machine, as a request's Host names them. */
const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;

/** The most queue handles the dashboard keeps open. */
const MAX_QUEUES = 1_000;

function randomHex(bytes: number): string {
  return [...crypto.getRandomValues(new Uint8Array(bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Compares two strings in time that does not depend on where they differ. */
function same(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a), y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

async function hmacHex(key: string, text: string): Promise<string> {
  const k = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(key),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const sig = await crypto.subtle.sign("HMAC", k, new TextEncoder().encode(text));
  return [...new Uint8Array(sig)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function cookieOf(req: Request, name: string): string | undefined {
  for (const part of (req.headers.get("cookie") ?? "").split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return v.join("=");
  }
  return undefined;
}

/**
 * Makes the dashboard's request handler.
 *
 * @example Behind a token
 * ```ts
 * import { dashboard } from "@sluice/sluice/dashboard";
 * import { startRedis } from "@sluice/sluice/testing";
 * await using redis = await startRedis();
 * await using handler = dashboard({ redis: redis.url, token: "a long secret" });
 * const refused = await handler(new Request("http://localhost/"));
 * const allowed = await handler(
 *   new Request("http://localhost/", { headers: { authorization: "Bearer a long secret" } }),
 * );
 * console.log(refused.status, allowed.status); // 401 200
 * await refused.body?.cancel();
 * await allowed.body?.cancel();
 * ```
 *
 * @param options Where Redis is, the base path, the prefix, a token, read-only mode.
 * @returns The handler, with `close()`.
 * @throws {TypeError} If an option is invalid.
 */
export function dashboard(options: DashboardOptions = {}): DashboardHandler {
  const action = "Cannot create the dashboard";
  const {
    redis = DEFAULT_REDIS,
    basePath = "",
    prefix = "sluice",
    group = "sluice",
    token,
    readOnly = false,
  } = options;
  checkRedisConfig(action, redis);
  checkName("prefix", prefix, action);
  checkName("group", group, action);
  if (typeof basePath !== "string" || (basePath !== "" && !/^\/[^?#]*[^/]$/.test(basePath))) {
    throw new TypeError(
      `${action}: basePath must be "" or a path like "/admin/queues" (no trailing slash), got ${
        show(basePath)
      }`,
    );
  }
  if (token !== undefined && (typeof token !== "string" || token === "")) {
    throw new TypeError(`${action}: token must be a non-empty string, got ${show(token)}`);
  }
  if (typeof readOnly !== "boolean") {
    throw new TypeError(`${action}: readOnly must be a boolean, got ${show(readOnly)}`);
  }
  const shared = share(redis);
  /** Queue handles by name, oldest first, with the priority list they were made with. */
  const queues = new Map<string, { queue: Queue; record: string }>();
  /** Closes of handles dropped from `queues`, awaited by close(). */
  const retired = new Set<Promise<void>>();
  const hub = new LiveHub();
  const closing = new AbortController();
  const csrf = randomHex(32);
  const cookie = token === undefined ? undefined : hmacHex(token, "sluice dashboard cookie");

  /**
   * A handle on queue `name`, with the priorities recorded for it in Redis (read each time:
   * a queue may get its list after the dashboard first saw it). At most MAX_QUEUES are kept.
   */
  const queueOf = async (name: string): Promise<Queue> => {
    if (/^\.+$/.test(name)) {
      throw new TypeError(`Cannot show queue ${name}: a URL path cannot carry a name of dots`);
    }
    const lanes = await recordedLanes(shared.command, queueKeys(name, prefix));
    // No await from here on: requests for the same queue at once share one handle.
    const known = queues.get(name);
    queues.delete(name); // kept most recently used last
    if (known !== undefined && known.record === lanes.record) {
      queues.set(name, known);
      return known.queue;
    }
    const queue = queueFor(name, lanes.names, { redis, prefix, group, logger: "text" });
    queues.set(name, { queue, record: lanes.record });
    if (known !== undefined) retire(known.queue);
    if (queues.size > MAX_QUEUES) {
      const [oldest, entry] = queues.entries().next().value!;
      queues.delete(oldest);
      retire(entry.queue);
    }
    return queue;
  };
  /** Closes a handle dropped from `queues`; close() waits for those still closing. */
  const retire = (queue: Queue) => {
    const closing = queue.close().finally(() => retired.delete(closing));
    retired.add(closing);
  };
  const view = (): pages.View => ({ base: basePath, readOnly, now: Date.now() });
  const htmlResponse = (body: Html, status = 200, headers: HeadersInit = {}) => {
    const nonce = randomHex(16);
    return new Response(
      body.text.replace('<script type="module">', `<script type="module" nonce="${nonce}">`),
      {
        status,
        headers: {
          "content-type": "text/html; charset=utf-8",
          "cache-control": "no-store",
          "content-security-policy":
            `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
          "x-content-type-options": "nosniff",
          "referrer-policy": "same-origin",
          ...headers,
        },
      },
    );
  };
  /** A whole page; `csrf: false` for pages shown before signing in, which carry no token. */
  const full = (
    title: string,
    body: Html,
    extra: { events?: string; queue?: string; csrf?: false } = {},
    status = 200,
  ) => {
    const { csrf: withToken, ...rest } = extra;
    return htmlResponse(
      page({ title, base: basePath, csrf: withToken === false ? "" : csrf, body, ...rest }),
      status,
    );
  };
  const text = (body: string, status = 200) =>
    new Response(body, {
      status,
      headers: { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff" },
    });
  const queuePath = (name: string) => `${basePath}/queues/${encodeURIComponent(name)}`;
  /** A required query parameter (ids travel in the query: see pages.ts `under`). */
  const param = (url: URL, name: string): string => {
    const value = url.searchParams.get(name);
    if (value === null || value === "") throw new TypeError(`Cannot act: give ${name}`);
    return value;
  };

  const routes: Route[] = [];
  const get = (path: string, run: Route[2]) =>
    routes.push(["GET", new URLPattern({ pathname: basePath + path }), run]);
  const post = (path: string, run: Route[2]) =>
    routes.push(["POST", new URLPattern({ pathname: basePath + path }), run]);

  get("/", async () => {
    const found = await listQueues(redis, { prefix, group });
    const now = Date.now();
    const series = await Promise.all(
      found.map((s) => hourSeries(shared.command, queueKeys(s.name, prefix), now)),
    );
    return full("Queues", pages.queuesPage(view(), found, series));
  });
  get("/queues/:q", async (_req, p) => {
    const queue = await queueOf(p.q!);
    const summary = await describeQueue(shared.command, queue.name, prefix, group);
    const series = await hourSeries(shared.command, queue.keys, Date.now());
    return full(queue.name, pages.queuePage(view(), summary, series), {
      events: `${queuePath(queue.name)}/events`,
      queue: queue.name,
    });
  });
  get("/queues/:q/counts", async (_req, p) => {
    const summary = await describeQueue(shared.command, (await queueOf(p.q!)).name, prefix, group);
    return htmlResponse(pages.countsFragment(view(), summary));
  });
  // The stream ends when the client goes away (Deno cancels the body) or the handler closes.
  get("/queues/:q/events", async (_req, p, url) => {
    const job = url.searchParams.get("job") ?? undefined;
    return hub.stream(await queueOf(p.q!), job, closing.signal);
  });
  get("/queues/:q/jobs/:state", async (_req, p, url) => {
    const queue = await queueOf(p.q!);
    const st = p.state as ListState;
    if (!LIST_STATES.includes(st)) return text(`No state ${st}.`, 404);
    const filter: { task?: string; group?: string } = {};
    const task = url.searchParams.get("task"), grp = url.searchParams.get("group");
    if (task) filter.task = task;
    if (grp) filter.group = grp;
    const cursor = url.searchParams.get("cursor");
    const result = await queue.jobs(st, { ...filter, ...(cursor ? { cursor } : {}) });
    return full(
      `${queue.name}: ${st}`,
      pages.jobsPage(view(), queue.name, st, result.jobs, result.cursor, filter),
      { events: `${queuePath(queue.name)}/events`, queue: queue.name },
    );
  });
  get("/queues/:q/find", async (_req, p, url) => {
    const queue = await queueOf(p.q!);
    const id = (url.searchParams.get("id") ?? "").trim();
    const found = id === "" ? [] : await queue.find(id);
    if (found.length === 1 && found[0]!.id === id) {
      const to = `${queuePath(queue.name)}/job?${new URLSearchParams({ id })}`;
      return Response.redirect(new URL(to, url), 303);
    }
    return full(`Find ${id}`, pages.findPage(view(), queue.name, id, found), { queue: queue.name });
  });
  get("/queues/:q/job", async (_req, p, url) => {
    const queue = await queueOf(p.q!);
    const id = param(url, "id");
    const details = await queue.jobDetails(id);
    if (details === undefined) {
      return full("Not found", pages.findPage(view(), queue.name, id, []), {
        queue: queue.name,
      }, 404);
    }
    if (url.searchParams.has("fragment")) {
      return htmlResponse(pages.jobFragment(view(), queue.name, details));
    }
    return full(`Job ${id}`, pages.jobPage(view(), queue.name, details), {
      events: `${queuePath(queue.name)}/events?${new URLSearchParams({ job: id })}`,
      queue: queue.name,
    });
  });
  get("/queues/:q/workers", async (_req, p) => {
    const queue = await queueOf(p.q!);
    return full(
      `${queue.name}: workers`,
      pages.workersPage(view(), queue.name, await queue.workers()),
      { queue: queue.name },
    );
  });
  get("/queues/:q/schedules", async (_req, p) => {
    const queue = await queueOf(p.q!);
    return full(
      `${queue.name}: schedules`,
      pages.schedulesPage(view(), queue.name, await queue.schedules.list()),
      { queue: queue.name },
    );
  });
  get("/queues/:q/groups", async (_req, p) => {
    const queue = await queueOf(p.q!);
    return full(
      `${queue.name}: groups`,
      pages.groupsPage(view(), queue.name, await queue.groups.list()),
      { queue: queue.name },
    );
  });
  post("/queues/:q/:act(pause|resume)", async (_req, p) => {
    const queue = await queueOf(p.q!);
    const changed = p.act === "pause" ? await queue.pause() : await queue.resume();
    return text(
      changed ? `Queue ${queue.name} ${p.act}d.` : `Queue ${queue.name} was ${p.act}d already.`,
    );
  });
  post("/queues/:q/job/retry", async (_req, p, url) => {
    const id = param(url, "id");
    const n = await (await queueOf(p.q!)).retry("dead", { id });
    return n > 0 ? text(`Job ${id} replayed.`) : text(`Job ${id} is not a dead letter.`, 409);
  });
  post("/queues/:q/job/cancel", async (_req, p, url) => {
    const id = param(url, "id");
    const outcome = await (await queueOf(p.q!)).job(id).cancel();
    return text(
      outcome.cancelled ? `Job ${id} cancelled.` : `Job ${id} was ${outcome.state}: nothing done.`,
      outcome.cancelled ? 200 : 409,
    );
  });
  post("/queues/:q/dead/retry", async (_req, p, url) => {
    const task = url.searchParams.get("task"), grp = url.searchParams.get("group");
    const n = await (await queueOf(p.q!)).retry("dead", {
      ...(task ? { task } : {}),
      ...(grp ? { group: grp } : {}),
    });
    return text(`${n} dead letter(s) replayed.`);
  });
  post("/queues/:q/dead/delete", async (_req, p, url) => {
    const deadId = param(url, "deadId");
    if (!/^\d+-\d+$/.test(deadId)) return text("Not a dead letter id.", 400);
    const n = await (await queueOf(p.q!)).dead.purge([deadId]);
    return text(n > 0 ? "Dead letter deleted." : "No such dead letter.", n > 0 ? 200 : 404);
  });
  post("/queues/:q/schedule/:act(pause|resume|run)", async (_req, p, url) => {
    const id = param(url, "id");
    const schedules = (await queueOf(p.q!)).schedules;
    if (p.act === "run") {
      const job = await schedules.trigger(id);
      return job === null
        ? text(`No schedule ${id}.`, 404)
        : text(`Schedule ${id} ran: job ${job}.`);
    }
    const found = p.act === "pause" ? await schedules.pause(id) : await schedules.resume(id);
    return found ? text(`Schedule ${id} ${p.act}d.`) : text(`No schedule ${id}.`, 404);
  });
  post("/queues/:q/group/:act(pause|resume)", async (_req, p, url) => {
    const name = param(url, "group");
    const groups = (await queueOf(p.q!)).groups;
    if (p.act === "pause") await groups.pause(name);
    else await groups.resume(name);
    return text(`Group ${name} ${p.act}d.`);
  });

  /** How the request is signed in: its bearer token, the login cookie, or no token is set. */
  const signedIn = async (req: Request): Promise<"bearer" | "cookie" | "open" | undefined> => {
    if (token === undefined) return "open";
    const auth = req.headers.get("authorization") ?? "";
    if (auth.startsWith("Bearer ") && same(auth.slice(7), token)) return "bearer";
    const value = cookieOf(req, COOKIE);
    return value !== undefined && same(value, await cookie!) ? "cookie" : undefined;
  };

  const login = async (req: Request, url: URL): Promise<Response> => {
    if (req.method === "GET") {
      return full("Sign in", pages.loginPage(view(), false), { csrf: false }, token ? 200 : 404);
    }
    const form = await req.formData().catch(() => undefined);
    const given = form?.get("token");
    if (token === undefined || typeof given !== "string" || !same(given, token)) {
      return full("Sign in", pages.loginPage(view(), true), { csrf: false }, 401);
    }
    const path = basePath === "" ? "/" : basePath;
    return new Response(null, {
      status: 303,
      headers: {
        location: new URL(`${basePath}/`, url).pathname,
        "set-cookie": `${COOKIE}=${await cookie!}; HttpOnly; SameSite=Strict; Path=${path}${
          url.protocol === "https:" ? "; Secure" : ""
        }`,
      },
    });
  };

  const handle = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    if (url.pathname === basePath && basePath !== "") {
      return Response.redirect(new URL(`${basePath}/`, url), 308);
    }
    // With no token, only this machine may use the dashboard: a page on another site whose
    // name was rebound to 127.0.0.1 (DNS rebinding) sends its own name as Host.
    if (token === undefined && !LOOPBACK.test(url.hostname)) {
      return text(
        `Refused: Host ${url.hostname} is not this machine; give the dashboard a token to serve it beyond 127.0.0.1.`,
        403,
      );
    }
    if (url.pathname === `${basePath}/login`) return await login(req, url);
    const how = await signedIn(req);
    if (how === undefined) {
      if ((req.headers.get("accept") ?? "").includes("text/html")) {
        return full("Sign in", pages.loginPage(view(), false), { csrf: false }, 401);
      }
      return text("Unauthorized: send Authorization: Bearer <token>.", 401);
    }
    if (req.method === "POST" && readOnly) return text("The dashboard is read-only.", 403);
    // A script sending the token in its Authorization header needs no CSRF token: a browser
    // never adds that header to a request another site makes.
    if (req.method === "POST" && how !== "bearer") {
      const origin = req.headers.get("origin");
      if (origin !== null && origin !== url.origin) {
        return text("Cross-origin request refused.", 403);
      }
      // Actions read no body: a form's body is read here, for its _csrf field.
      const given = req.headers.get("x-csrf-token") ??
        (await req.formData().catch(() => undefined))?.get("_csrf");
      if (typeof given !== "string" || !same(given, csrf)) {
        return text("Missing or wrong CSRF token.", 403);
      }
    }
    for (const [method, pattern, run] of routes) {
      const match = pattern.exec(url);
      if (match === null) continue;
      if (method !== req.method) continue;
      try {
        const params: Params = {};
        for (const [k, v] of Object.entries(match.pathname.groups)) {
          if (v !== undefined) params[k] = decodeURIComponent(v);
        }
        return await run(req, params, url);
      } catch (err) {
        // sluice's own input checks say "Cannot <action>: <why>"; a bad %-escape is a URIError.
        const bad = err instanceof URIError ||
          (err instanceof TypeError || err instanceof RangeError) &&
            /^Cannot [^:(]+: /.test(err.message);
        return text(`${bad ? "Bad request" : "Error"}: ${(err as Error).message}`, bad ? 400 : 500);
      }
    }
    return text("Not found.", 404);
  };

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    closing.abort();
    hub.close();
    await Promise.all([...queues.values()].map((q) => q.queue.close()));
    await Promise.all([...retired]);
    await shared.release();
  };
  return Object.assign(handle, { close, [Symbol.asyncDispose]: close });
}

/**
 * Test helpers: worker subprocesses that report events, and waits on events or Redis state
 * with a deadline, never a fixed sleep.
 */
import { Redis } from "ioredis";
import { share, type SharedRedis } from "../src/redis/connect.ts";
import type { Worker, WorkerEventDetail } from "../mod.ts";

const WORKER = new URL("./fault/_worker.ts", import.meta.url).pathname;

/** One JSON line printed by tests/fault/_worker.ts. */
export type WorkerEvent = { ev: string; id?: string; [key: string]: unknown };

/** A worker process under test. */
export class WorkerProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly events: WorkerEvent[] = [];
  readonly stderr: string[] = [];
  #waiters = new Set<() => void>();
  #drained: Promise<unknown>;
  #status: Promise<Deno.CommandStatus>;

  /**
   * @param redis A Redis URL, or the redis option as an object (Sentinel, Cluster), passed on
   * as JSON.
   * @param options Flags of tests/fault/_worker.ts, without the dashes.
   * @param env More environment variables for the process.
   */
  constructor(
    redis: string | object,
    options: Record<string, string | number> = {},
    env: Record<string, string> = {},
  ) {
    const args = ["run", "-A", WORKER];
    args.push("--redis", typeof redis === "string" ? redis : JSON.stringify(redis));
    for (const [key, value] of Object.entries(options)) args.push(`--${key}`, String(value));
    this.child = new Deno.Command(Deno.execPath(), {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", ...env },
    }).spawn();
    this.#status = this.child.status;
    this.#drained = Promise.all([
      this.#read(this.child.stdout, (line) => {
        try {
          this.events.push(JSON.parse(line));
        } catch {
          this.stderr.push(`stdout: ${line}`);
        }
      }),
      this.#read(this.child.stderr, (line) => this.stderr.push(line)),
    ]);
  }

  get pid(): number {
    return this.child.pid;
  }

  get status(): Promise<Deno.CommandStatus> {
    return this.#status;
  }

  /** Events of one kind, optionally for one job id. */
  count(ev: string, id?: string): number {
    return this.events.filter((e) => e.ev === ev && (id === undefined || e.id === id)).length;
  }

  /** Waits until `predicate` holds for some event; throws with the log after `timeout` ms. */
  async waitFor(
    predicate: (e: WorkerEvent) => boolean,
    what: string,
    timeout = 20_000,
  ): Promise<WorkerEvent> {
    const found = () => this.events.find(predicate);
    return await waitUntil(
      found,
      (wake) => {
        this.#waiters.add(wake);
        return () => this.#waiters.delete(wake);
      },
      timeout,
      () => `worker ${this.pid}: ${what}\n${this.log()}`,
    );
  }

  /** Waits for `n` events of kind `ev`. */
  waitForCount(ev: string, n: number, timeout?: number): Promise<WorkerEvent> {
    return this.waitFor(() => this.count(ev) >= n, `${n} x ${ev}`, timeout);
  }

  signal(sig: Deno.Signal): void {
    this.child.kill(sig);
  }

  log(): string {
    return [...this.events.map((e) => JSON.stringify(e)), ...this.stderr].join("\n");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await Promise.all([this.#status, this.#drained]);
  }

  async #read(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void) {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop()!;
      for (const line of lines) if (line) onLine(line);
      for (const wake of this.#waiters) wake();
    }
    if (rest) onLine(rest);
    for (const wake of this.#waiters) wake();
  }
}

/**
 * Resolves with `check()`'s first truthy value. `subscribe(wake)` arranges for `wake` to be
 * called when the answer may have changed, and returns an unsubscribe function.
 */
export async function waitUntil<T>(
  check: () => T | undefined | false,
  subscribe: (wake: () => void) => () => void,
  timeout: number,
  describe: () => string,
): Promise<T> {
  const { promise, resolve, reject } = Promise.withResolvers<T>();
  const wake = () => {
    const value = check();
    if (value) resolve(value);
  };
  const unsubscribe = subscribe(wake);
  const timer = setTimeout(
    () => reject(new Error(`Timed out after ${timeout} ms waiting for ${describe()}`)),
    timeout,
  );
  wake();
  try {
    return await promise;
  } finally {
    clearTimeout(timer);
    unsubscribe();
  }
}

/**
 * Waits until `probe()` (a Redis query) returns a truthy value, asking again after each answer:
 * a wait on Redis state with a deadline, not a fixed sleep.
 */
export async function waitForRedis<T>(
  probe: () => Promise<T | undefined | false>,
  what: string,
  timeout = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeout;
  let last: T | undefined | false;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last;
    // Yield to the event loop between round trips.
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`Timed out after ${timeout} ms waiting for ${what} (last: ${String(last)})`);
}

/** A raw ioredis client for inspecting Redis in tests. */
export function inspect(url: string): Redis & AsyncDisposable {
  const client = new Redis(url, { lazyConnect: true }) as Redis & AsyncDisposable;
  client[Symbol.asyncDispose] = async () => {
    await client.quit().catch(() => client.disconnect());
  };
  return client;
}

/** The number of entries pending in group `sluice` of a stream (0 if none). */
export async function pendingCount(redis: Redis, stream: string): Promise<number> {
  try {
    const summary = await redis.xpending(stream, "sluice") as [number, ...unknown[]];
    return Number(summary[0]);
  } catch (err) {
    if (String(err).includes("NOGROUP")) return 0; // no worker has created the group yet
    throw err;
  }
}

/** Calls of one command so far, from INFO commandstats. */
export async function commandCalls(redis: Redis, command: string): Promise<number> {
  const info = await redis.info("commandstats");
  const match = info.match(new RegExp(`cmdstat_${command}:calls=(\\d+)`));
  return match ? Number(match[1]) : 0;
}

/**
 * The process's shared connections to `url`: the command connection every queue and consumer
 * of this process uses, with sluice's scripts defined. For `await using`.
 */
export function sharedRedis(url: string): SharedRedis & AsyncDisposable {
  const redis = share(url);
  return Object.assign(redis, { [Symbol.asyncDispose]: () => redis.release() });
}

/** The most starts in any window of `interval` ms, over sorted times. */
export function busiest(times: readonly number[], interval: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[i]! - sorted[j]! >= interval) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

/** Runs `worker` until `n` jobs completed; returns what each completion saw. */
export async function runUntil(
  worker: Worker,
  n: number,
): Promise<WorkerEventDetail["completed"][]> {
  const done: WorkerEventDetail["completed"][] = [];
  worker.addEventListener("completed", (e) => {
    done.push(e.detail);
    if (done.length === n) worker.stop();
  });
  await worker.run();
  return done;
}

/** Parses Prometheus text into "name{labels}" → value (comments and blank lines skipped). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const cut = line.lastIndexOf(" ");
    out.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return out;
}

/** How many events one entry of a queue's events stream holds: its fields' id arrays. */
export function countEvents(fields: readonly string[]): number {
  let n = 0;
  for (let i = 1; i < fields.length; i += 2) n += (JSON.parse(fields[i]!) as unknown[]).length;
  return n;
}

/**
 * Durable mode: the `durability` option checked, and what enqueue.ts and settle.ts share to
 * read the `WAIT` they pipeline behind their writes. Without the option none of this runs.
 *
 * @module
 */
import { show } from "./_options.ts";

/**
 * Durable mode: every enqueue and every settle waits until `replicas` replicas acknowledged it
 * (Redis `WAIT`, sent in the same pipeline as the write), for at most `timeout` ms.
 *
 * @example A queue and a worker that wait for one replica
 * ```ts
 * import { type Durability, Queue, task, Worker } from "@sluice/sluice";
 *
 * const durability: Durability = { replicas: 1, timeout: 500 };
 * const queue = new Queue("billing", { durability });
 * const worker = new Worker("billing", [task("charge", () => {})], {
 *   durability,
 *   handleSignals: false,
 * });
 * console.log(worker.name); // "billing"
 * await queue.close();
 * ```
 */
export interface Durability {
  /**
   * How many replicas must acknowledge each write: 1 to 16. Ask for no more than will still
   * be there after a failover, or every write fails while one replica is away.
   */
  replicas: number;
  /**
   * How long (ms) to wait for them: 1 to 10,000, and at most a third of a consumer's
   * `idleTimeout`. `WAIT` holds the process's command connection meanwhile.
   */
  timeout: number;
}

/**
 * The most replicas a write may wait for. Redis sets no limit, but a write waits for the
 * slowest replica it needs, and one surviving replica is enough to keep a write through a
 * failover: past a handful this buys latency, not safety. 16 leaves room for large fleets; a
 * bigger number is more likely a slip (milliseconds in the wrong field) than a topology.
 */
export const MAX_REPLICAS = 16;

/**
 * The longest a write may wait for its replicas (ms). `WAIT` blocks the connection it is sent
 * on, and a process shares one command connection among its queues and consumers: while a
 * replica is away, every command behind a `WAIT` (lease renewals among them) waits as well.
 * 10 s is a third of the default `idleTimeout`, so that a renewal held up behind it still
 * lands in time. (`WAIT` with 0 would block forever: 0 is refused.)
 */
export const MAX_TIMEOUT_MS = 10_000;

/**
 * Checks the `durability` option.
 *
 * @param action What is being done, for the message ("Cannot create queue").
 * @param value The option as given.
 * @returns A copy with only the two fields.
 * @throws {TypeError} If it is not an object, or has another field (a typo would otherwise
 * silently turn durable mode off).
 * @throws {RangeError} If replicas is not an integer from 1 to 16, or timeout not from 1 to
 * 10,000 ms.
 *
 * @example
 * ```ts
 * import { checkDurability } from "./durable.ts";
 * try {
 *   checkDurability("Cannot create queue", { replicas: 1, timeout: 0 });
 * } catch (err) {
 *   // Cannot create queue: durability.timeout must be an integer from 1 to 10000 (ms), got 0
 *   console.log((err as Error).message);
 * }
 * ```
 */
export function checkDurability(action: string, value: unknown): Durability {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(
      `${action}: durability must be { replicas, timeout }, got ${show(value)}`,
    );
  }
  for (const key of Object.keys(value)) {
    if (key !== "replicas" && key !== "timeout") {
      throw new TypeError(
        `${action}: durability has an unknown option ${
          JSON.stringify(key)
        } (known: replicas, timeout)`,
      );
    }
  }
  const { replicas, timeout } = value as Partial<Durability>;
  if (!isInt(replicas, 1, MAX_REPLICAS)) {
    throw new RangeError(
      `${action}: durability.replicas must be an integer from 1 to ${MAX_REPLICAS}, got ${
        show(replicas)
      }`,
    );
  }
  if (!isInt(timeout, 1, MAX_TIMEOUT_MS)) {
    const zero = timeout === 0 ? " (WAIT with 0 would wait forever)" : "";
    throw new RangeError(
      `${action}: durability.timeout must be an integer from 1 to ${MAX_TIMEOUT_MS} (ms), got ${
        show(timeout)
      }${zero}`,
    );
  }
  return { replicas, timeout };
}

/**
 * Checks durability against a consumer's `idleTimeout`: `WAIT` may hold lease renewals back
 * for up to `timeout`, and a renewal is due every third of `idleTimeout`.
 *
 * @throws {RangeError} If `timeout` is over a third of `idleTimeout`.
 */
export function checkIdle(
  action: string,
  durability: Durability | undefined,
  idleTimeout: number,
): void {
  if (durability === undefined) return;
  const most = Math.floor(idleTimeout / 3);
  if (durability.timeout > most) {
    throw new RangeError(
      `${action}: durability.timeout must be at most a third of idleTimeout (${most} ms): WAIT holds up lease renewals, got ${durability.timeout}`,
    );
  }
}

/**
 * How many replicas a `WAIT` reply says acknowledged, or undefined if that is enough. An error
 * reply counts as none.
 */
export function shortfall(
  reply: [Error | null, unknown] | undefined,
  durability: Durability,
): number | undefined {
  if (reply === undefined || reply[0] !== null) return 0;
  const acked = Number(reply[1]);
  return acked >= durability.replicas ? undefined : acked;
}

/** Whether a value is an integer from `min` to `max`. */
function isInt(value: unknown, min: number, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= min && value <= max;
}

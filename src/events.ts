/**
 * Live events across processes: what happened to which job, read by any process from a capped
 * Redis stream (`keys.events`).
 *
 * Events are written by the scripts that move jobs, in the calls they make anyway: ENQUEUE
 * (`waiting`, `delayed`), SETTLE (`completed`, `retrying`, `dead`, `cancelled`, and `waiting`
 * or `delayed` for a job handed back or put off), RECLAIM (`stalled`, `dead`), CANCEL
 * (`cancelled`), PROMOTE, schedule FIRE and dead-letter REPLAY (`waiting`), RETIRE (`waiting`,
 * `cancelled`), PROGRESS (`progress`); a webhook delivery's `waiting` comes after the end it
 * reports. A worker's starts (`active`) ride
 * its next settle's round trip as one XADD, or go on their own after 20 ms if no settle comes.
 *
 * One script call writes one stream entry holding all its events: a settle of 200 jobs adds
 * one entry of one field, not 200 XADDs. Events that share a head `<type> <task>[ <detail>]`
 * share a field, whose value is the JSON array of their job ids (ids may hold any character;
 * types, tasks and details hold no space but the last detail of `progress`, its JSON). The
 * entry's id gives the time. Trimming is approximate (`MAXLEN ~`): an entry of n events asks
 * for at most cap / n entries, so the stream holds about `cap` events while calls are alike
 * in size.
 *
 * @module
 */
import type { ChainableCommander } from "ioredis";
import { checkInt, show } from "./_options.ts";
import { delay } from "./async.ts";
import { retryWait } from "./backoff.ts";
import type { Keys } from "./keys.ts";
import { type BlockingLine, blockingLine, processName, type RedisConfig } from "./redis/connect.ts";
import type { ScriptClient } from "./scripts/mod.ts";

/** What happened to a job. */
export type QueueEventType =
  | "waiting"
  | "delayed"
  | "active"
  | "progress"
  | "completed"
  | "retrying"
  | "dead"
  | "cancelled"
  | "stalled";

/** One event of a queue, from {@linkcode Queue.events}. */
export interface QueueEvent {
  /**
   * What happened: `waiting` (ready to start: enqueued, promoted when due, handed back
   * unstarted), `delayed` (enqueued for later, or put off by a rate limit), `active` (a
   * Worker's handler started it), `progress`, `completed`, `retrying` (failed; another attempt
   * is due), `dead`, `cancelled`, `stalled` (its worker stopped renewing its lease: reclaimed).
   */
  readonly type: QueueEventType;
  /** The job id. */
  readonly jobId: string;
  /** The task name. */
  readonly task: string;
  /** When it was recorded: epoch ms, Redis's clock. */
  readonly at: number;
  /** The stream entry the event came in: pass it as `since` to follow on after it. */
  readonly cursor: string;
  /** `active`: the attempt starting; `retrying`: the attempt that is next. */
  readonly attempt?: number;
  /** `delayed` and `retrying`: when it is due, epoch ms (Redis's clock). */
  readonly due?: number;
  /** `dead`: why (`failed`, `non-retryable`, `timeout`, `delivery-limit`, ...). */
  readonly reason?: string;
  /** `progress`: the value given to `ctx.progress()`. */
  readonly progress?: unknown;
  /** `active`: the consumer (worker) that started it. */
  readonly worker?: string;
}

/** Options of {@linkcode Queue.events}. */
export interface EventsOptions {
  /** Ends the stream. */
  signal?: AbortSignal;
  /**
   * Where to start: `"$"` (events from now on), `"0"` (every event the stream still keeps), a
   * `cursor` of an earlier event (the events after its entry), or a time (epoch ms, or a
   * `Date`: the events recorded from then on, as far as the stream still keeps them).
   *
   * @default {"$"}
   */
  since?: string | number | Date;
  /**
   * The most events read per round trip: 1 to 100,000.
   *
   * @default {1_000}
   */
  count?: number;
}

/** The largest events cap. */
const MAX_CAP = 10_000_000;

/**
 * The events cap a queue's `events` option gives: 0 for off.
 *
 * @throws {TypeError} If it is neither a boolean nor `{ maxlen? }`.
 * @throws {RangeError} If `maxlen` is not an integer from 1 to 10,000,000.
 */
export function eventsCap(action: string, events: unknown): number {
  if (events === false) return 0;
  if (events === true) return 10_000;
  if (typeof events !== "object" || events === null || Array.isArray(events)) {
    throw new TypeError(
      `${action}: events must be true, false or { maxlen }, got ${show(events)}`,
    );
  }
  for (const key of Object.keys(events)) {
    if (key !== "maxlen") {
      throw new TypeError(`${action}: events has no option ${JSON.stringify(key)}`);
    }
  }
  const { maxlen = 10_000 } = events as { maxlen?: unknown };
  checkInt(action, "events.maxlen", maxlen, 1, MAX_CAP);
  return maxlen as number;
}

/** The MAXLEN ~ an entry of `n` events asks for, under cap `cap`. */
export function entryCap(cap: number, n: number): number {
  return Math.max(1, Math.floor(cap / Math.max(1, n)));
}

/** The events of one stream entry, in order. */
export function decodeEntry(cursor: string, fields: readonly string[]): QueueEvent[] {
  const out: QueueEvent[] = [];
  const at = Number(cursor.slice(0, cursor.indexOf("-")));
  for (let i = 0; i + 1 < fields.length; i += 2) {
    let ids: unknown;
    try {
      ids = JSON.parse(fields[i + 1]!);
    } catch {
      continue; // not an events field of this version
    }
    if (!Array.isArray(ids)) continue;
    for (const id of ids) {
      if (typeof id !== "string") continue;
      const event = decodeEvent(fields[i]!, id, at, cursor);
      if (event !== undefined) out.push(event);
    }
  }
  return out;
}

/** One event from its field and value; undefined for a type this version does not know. */
function decodeEvent(
  head: string,
  jobId: string,
  at: number,
  cursor: string,
): QueueEvent | undefined {
  const cut = head.indexOf(" ");
  const type = cut < 0 ? head : head.slice(0, cut);
  const rest = cut < 0 ? "" : head.slice(cut + 1);
  const base = { jobId, at, cursor };
  if (type === "progress") {
    const end = rest.indexOf(" ");
    let progress: unknown = undefined;
    try {
      progress = JSON.parse(rest.slice(end + 1));
    } catch {
      // a value this version cannot read: the event still says progress was made
    }
    return { type, task: rest.slice(0, end), ...base, progress };
  }
  const [task = "?", a, b] = rest.split(" ");
  switch (type) {
    case "waiting":
    case "completed":
    case "cancelled":
    case "stalled":
      return { type, task, ...base };
    case "delayed":
      return { type, task, ...base, due: Number(a) };
    case "active":
      return { type, task, ...base, attempt: Number(a), ...(b ? { worker: b } : {}) };
    case "retrying":
      return { type, task, ...base, attempt: Number(a), due: Number(b) };
    case "dead":
      return { type, task, ...base, reason: a ?? "" };
  }
  return undefined;
}

/** What `follow` needs of its queue. */
export interface EventSource {
  readonly name: string;
  readonly keys: Keys;
  readonly redis: RedisConfig;
  readonly client: ScriptClient;
}

/** Longest a read blocks before it looks at its signal again. */
const BLOCK_MS = 1_000;

/**
 * The events of a queue as a stream, read with XREAD on a connection of its own, which it
 * closes when `signal` aborts or the stream is cancelled. Redis going away is waited out.
 */
export function follow(
  source: EventSource,
  options: EventsOptions,
  action: string,
): { stream: ReadableStream<QueueEvent>; ended: Promise<void> } {
  const { signal, since = "$", count = 1_000 } = options;
  checkInt(action, "count", count, 1, 100_000);
  let start: string | undefined;
  if (since instanceof Date || typeof since === "number") {
    const ms = since instanceof Date ? since.getTime() : since;
    if (!Number.isSafeInteger(ms) || ms < 0) {
      throw new RangeError(`${action}: since must be a time from 0 on, got ${show(since)}`);
    }
    // XREAD reads after the id it is given: the last id of the millisecond before.
    start = ms === 0 ? "0-0" : `${ms - 1}-18446744073709551615`;
  } else if (since === "$" || since === "0") {
    start = since === "0" ? "0-0" : undefined;
  } else if (typeof since === "string" && /^\d+-\d+$/.test(since)) {
    start = since;
  } else {
    throw new TypeError(
      `${action}: since must be "$", "0", an event's cursor, epoch ms or a Date, got ${
        show(since)
      }`,
    );
  }
  // "$": the stream's last entry now, asked at once on the command connection, so an event of
  // anything the caller does next on it (an enqueue) comes after it and is seen.
  let last: Promise<unknown> | undefined;
  if (start === undefined) {
    last = source.client.xrevrange(source.keys.events, "+", "-", "COUNT", 1);
    last.catch(() => {});
  }
  const stop = new AbortController();
  const done = signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal]);
  const key = source.keys.events;
  let line: BlockingLine | undefined;
  let reading: Promise<unknown> | undefined;
  const onAbort = () => line?.disconnect();
  const ended = Promise.withResolvers<void>();
  let finished: Promise<void> | undefined;
  const finish = () =>
    finished ??= (async () => {
      done.removeEventListener("abort", onAbort);
      await reading?.catch(() => {});
      await line?.close();
      ended.resolve();
    })();
  let fails = 0, pulling = false;
  /** Closes the connection, then the stream (which may be closed or cancelled already). */
  const end = async (controller: ReadableStreamDefaultController<QueueEvent>) => {
    await finish();
    try {
      controller.close();
    } catch {
      // closed or cancelled already
    }
  };
  const stream = new ReadableStream<QueueEvent>({
    start(controller) {
      done.addEventListener("abort", () => {
        // Between pulls nothing else will end it: close now.
        if (!pulling) void end(controller);
      });
      done.addEventListener("abort", onAbort);
    },
    async pull(controller) {
      pulling = true;
      try {
        await pullSome(controller);
      } finally {
        pulling = false;
        // An abort that came while this pull was returning found it pulling: end here.
        if (done.aborted) await end(controller);
      }
    },
    async cancel() {
      stop.abort();
      await finish();
    },
  });
  return { stream, ended: ended.promise };

  async function pullSome(controller: ReadableStreamDefaultController<QueueEvent>) {
    if (finished) return;
    line ??= blockingLine(source.redis, source.client, key, `events-${processName()}`);
    while (!done.aborted) {
      try {
        const connection = await line.connection();
        if (start === undefined) {
          // "$": after the entry that was last when the stream was made (asked again if that
          // failed), so nothing written since, or between reads, is missed.
          const asked = last ?? source.client.xrevrange(key, "+", "-", "COUNT", 1);
          last = undefined;
          const entries = await asked;
          start = (entries as [string, string[]][])[0]?.[0] ?? "0-0";
        }
        const read = connection.xread("COUNT", count, "BLOCK", BLOCK_MS, "STREAMS", key, start);
        reading = read;
        const reply = await read as [string, [string, string[]][]][] | null;
        fails = 0;
        const entries = reply?.[0]?.[1] ?? [];
        let sent = 0;
        for (const [id, fields] of entries) {
          start = id;
          for (const event of decodeEntry(id, fields)) {
            controller.enqueue(event);
            sent++;
          }
        }
        if (sent > 0) return;
      } catch (err) {
        if (done.aborted) break;
        line.failed(err);
        await delay(retryWait(50, ++fails, 2_000), { signal: done }).catch(() => {});
      }
    }
    // Aborted: pull() ends the stream.
  }
}

/**
 * A consumer's `active` events: buffered as its handlers start, written in the round trip of
 * its next settle, or on their own after 20 ms if no settle comes first.
 */
export class Starts {
  /** The ids started, by head ("active <task> <attempt> <worker>"). */
  #heads = new Map<string, string[]>();
  #count = 0;
  /** The last start's task and attempt, and the ids of its head. */
  #task = "";
  #attempt = 0;
  #ids: string[] | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #sending: Promise<unknown> | undefined;
  #client: ScriptClient;
  #key: string;
  #cap: number;

  constructor(client: ScriptClient, key: string, cap: number) {
    this.#client = client;
    this.#key = key;
    this.#cap = cap;
  }

  /** A handler started `id`. */
  started(id: string, task: string, attempt: number, worker: string): void {
    // Starts come in runs of one task and attempt: the last head is reused, not built again.
    if (task !== this.#task || attempt !== this.#attempt || this.#ids === undefined) {
      const head = `active ${task} ${attempt} ${worker}`;
      this.#task = task;
      this.#attempt = attempt;
      this.#ids = this.#heads.get(head);
      if (this.#ids === undefined) this.#heads.set(head, this.#ids = []);
    }
    this.#ids.push(id);
    this.#count++;
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, 20);
  }

  /** Adds the buffered starts to `pipeline` as one XADD; false if there were none. */
  queue(pipeline: ChainableCommander): boolean {
    if (this.#count === 0) return false;
    const fields: string[] = [];
    for (const [head, ids] of this.#heads) fields.push(head, JSON.stringify(ids));
    pipeline.xadd(this.#key, "MAXLEN", "~", entryCap(this.#cap, this.#count), "*", ...fields);
    this.#heads.clear();
    this.#count = 0;
    this.#ids = undefined;
    return true;
  }

  /** Writes the buffered starts now, on their own. Events are best effort: errors are dropped. */
  flush(): void {
    if (this.#count === 0) return;
    const pipeline = this.#client.pipeline();
    this.queue(pipeline);
    const sent = pipeline.exec().catch(() => {}).finally(() => {
      if (this.#sending === sent) this.#sending = undefined;
    });
    this.#sending = sent;
  }

  /** Writes what is buffered and waits for it; no timer is left. */
  async close(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.flush();
    await this.#sending;
  }
}

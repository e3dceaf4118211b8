/**
 * Reading: the consumer group's existence, blocking XREADGROUP on the consumer's own
 * connection, cutting it short with CLIENT UNBLOCK, and recovery when reads fail (a missing
 * group is recreated).
 *
 * With priorities, each has its own stream (a lane, highest first), and reads keep strict
 * order cheaply: a read asks the lowest lane it needs (the floor) for all the room, and each
 * lane above it for one entry, a probe. A probe that brings a job means a higher priority has
 * work: the floor moves up to it. A floor lane that brings less than asked is drained: the
 * next read looks one lane lower. Only when a read of every lane brings nothing does the
 * consumer block, on all of them. A read may so bring one entry per lane above the floor
 * beyond the room, and the hand-out order (admit.ts) puts those first. One lane (no
 * priorities) is a plain XREADGROUP, as before.
 *
 * @module
 */
import type { Holding } from "./consume.ts";
import type { ReadEntry } from "./admit.ts";
import { settlesWithin } from "./async.ts";
import { retryWait } from "./backoff.ts";
import { isOutOfMemory, toError } from "./errors.ts";
import { checkRecorded } from "./priority.ts";
import { type BlockingLine, blockingLine } from "./redis/connect.ts";
import { type ChainableCommander, Command, type Redis } from "ioredis";
import type { Buffer } from "node:buffer";

/** Entries read, by lane: `[lane, entries]` for each lane that brought any. */
export type LaneEntries = (readonly [lane: number, entries: ReadEntry[]])[];

/** An XREADGROUP reply read as bytes: `[stream, [[id, fields]...]]...`. */
type RawRead = [Uint8Array, [Uint8Array, Uint8Array[] | null][]][] | null;

/**
 * The text of one reply value, as ioredis would have decoded it (UTF-8, U+FFFD for bad bytes).
 * Reads ask for bytes: the field names and the usual short values are matched as bytes and
 * given as constant strings, with no decoding call, so a job's entry makes 5 strings, not 13.
 */
function text(b: Uint8Array): string {
  switch (b.length) {
    case 1:
      if (b[0] === 0x76) return "v";
      if (b[0] === 0x31) return "1";
      break;
    case 2:
      if (b[0] === 0x69 && b[1] === 0x64) return "id";
      break;
    case 3:
      if (b[0] === 0x65 && b[1] === 0x6e && b[2] === 0x71) return "enq";
      break;
    case 4:
      if (b[1] === 0x61 && b[2] === 0x74 && b[3] === 0x61 && b[0] === 0x64) return "data";
      if (b[1] === 0x61 && b[2] === 0x73 && b[3] === 0x6b && b[0] === 0x74) return "task";
      if (b[1] === 0x75 && b[2] === 0x6c && b[3] === 0x6c && b[0] === 0x6e) return "null";
      break;
    case 7:
      if (
        b[0] === 0x61 && b[1] === 0x74 && b[2] === 0x74 && b[3] === 0x65 && b[4] === 0x6d &&
        b[5] === 0x70 && b[6] === 0x74
      ) return "attempt";
  }
  return (b as Buffer).toString();
}

/**
 * XREADGROUP with its reply read as bytes and turned into entries as soon as it is parsed, in
 * place of ioredis's own decoding. Done there, and not once the caller has the reply, so that
 * the reply's byte views are garbage at once: kept until a pipeline's caller ran, they were
 * copied and promoted by the GC (measured: twice the bytes promoted, and slower than before).
 */
class ReadCommand extends Command {
  constructor(args: (string | number)[]) {
    super("xreadgroup", args, { replyEncoding: null });
  }

  override transformReply(result: Buffer | Buffer[]): string[] {
    const reply = result as unknown as RawRead;
    // The stream's name stays bytes: only a read of several lanes looks at it.
    const out = (reply ?? []).map(([stream, raw]) => [stream, entriesOf(raw)]);
    return (reply === null ? null : out) as unknown as string[];
  }
}

/** What sends a command: a connection, or a pipeline that queues it. */
export type Sender = { sendCommand(command: Command): unknown };

/**
 * Sends XREADGROUP `args` on `on` (a connection or a pipeline); its reply is `Read`: what
 * ioredis's `xreadgroup` gives, each entry's id and fields decoded the same way.
 */
export function xreadgroup(
  on: Sender,
  args: (string | number)[],
): Promise<Read> {
  const command = new ReadCommand(args);
  on.sendCommand(command);
  return command.promise as unknown as Promise<Read>;
}

/** An XREADGROUP reply as a ReadCommand gives it: each stream's name (bytes) and entries. */
export type Read = [Uint8Array, ReadEntry[]][] | null;

/** The entries of one stream of an XREADGROUP reply read as bytes. */
function entriesOf(raw: [Uint8Array, Uint8Array[] | null][]): ReadEntry[] {
  const entries: ReadEntry[] = [];
  for (let i = 0; i < raw.length; i++) {
    const [id, flat] = raw[i]!;
    const fields: string[] = [];
    if (flat !== null) { for (let f = 0; f < flat.length; f++) fields.push(text(flat[f]!)); }
    entries.push([(id as Buffer).toString(), fields]);
  }
  return entries;
}

/**
 * Where a consumer's reads of several lanes stand (see the module doc): the lane that gets the
 * room, and whether the last look at every lane found none with work.
 */
export class Floor {
  /** The lane asked for the room; those above it get probes. */
  lane = 0;
  readonly #last: number;
  readonly #lane: ReadonlyMap<string, number>;

  /** @param streams The lanes' streams, highest priority first. */
  constructor(streams: readonly string[]) {
    this.#last = streams.length - 1;
    this.#lane = new Map(streams.map((stream, lane) => [stream, lane]));
  }

  /** True if the queue has one lane: reads are plain. */
  get single(): boolean {
    return this.#last === 0;
  }

  /** True once the floor is the lowest lane: a read that brings nothing found none with work. */
  get bottom(): boolean {
    return this.lane === this.#last;
  }

  /**
   * Queues one read of `count` on `pipeline`: one XREADGROUP per lane down to the floor.
   * Returns how many were queued.
   */
  queue(
    pipeline: ChainableCommander,
    streams: readonly string[],
    group: string,
    consumer: string,
    count: number,
  ): number {
    for (let lane = 0; lane <= this.lane; lane++) {
      const ask = lane < this.lane ? 1 : count;
      xreadgroup(pipeline as unknown as Sender, [
        "GROUP",
        group,
        consumer,
        "COUNT",
        ask,
        "STREAMS",
        streams[lane]!,
        ">",
      ]);
    }
    return this.lane + 1;
  }

  /**
   * Learns from the replies of a read `queue()` sent (in lane order), and returns what it
   * brought. A lane whose reply failed counts as drained; its error is returned to throw once
   * the rest is admitted.
   */
  learn(
    replies: readonly ([Error | null, unknown] | undefined)[],
    count: number,
  ): { entries: LaneEntries; error: Error | undefined } {
    const entries: LaneEntries = [];
    // The floor the read was sent with: reads behind settles and the loop's may cross.
    const floor = replies.length - 1;
    let error: Error | undefined, full = -1;
    for (let lane = 0; lane <= floor; lane++) {
      const [err, reply] = replies[lane] ?? [new Error("no reply"), null];
      if (err) {
        error ??= err;
        continue;
      }
      const got = (reply as Read)?.[0]?.[1] ?? [];
      if (got.length > 0) entries.push([lane, got]);
      if (full < 0 && got.length >= (lane < floor ? 1 : count)) full = lane;
    }
    // A lane that brought all it was asked may have more: it gets the room next. Otherwise
    // every lane read is drained, and the next read looks one lane lower.
    this.lane = full >= 0 ? full : Math.min(floor + 1, this.#last);
    return { entries, error };
  }

  /** Learns from a blocking read of every lane: the highest lane that brought entries gets
   * the room next. Returns what it brought. */
  woken(reply: Read): LaneEntries {
    const entries: LaneEntries = [];
    for (const [stream, got] of reply ?? []) {
      const lane = this.#lane.get((stream as Buffer).toString());
      if (lane !== undefined && got.length > 0) entries.push([lane, got]);
    }
    entries.sort((a, b) => a[0] - b[0]);
    this.lane = entries[0]?.[0] ?? this.#last;
    return entries;
  }
}

/** The longest a blocking read waits before the loop looks around again. */
const MAX_BLOCK_MS = 10_000;

/** One consumer's reads. */
export class Reader {
  #c: Holding;
  #line: BlockingLine;
  /** The blocking connection's CLIENT ID, once known on this connection. */
  #id: number | undefined;
  /** The connection `#id` belongs to. */
  #idOn: Redis | undefined;
  /** The blocking read, while under way. */
  #read: Promise<unknown> | undefined;
  #group: Promise<void> | undefined;
  #failures = 0;
  #floor: Floor;
  /** interrupt() was called since this read began: it must not block. */
  #woken = false;

  constructor(c: Holding) {
    this.#c = c;
    this.#floor = c.floor;
    const { redis, client, keys } = c.ctx;
    this.#line = blockingLine(redis, client, keys.stream, c.name);
  }

  /**
   * Makes sure the consumer group exists on every lane's stream (once, or again with `force`),
   * after checking the queue's priority list against Redis's the first time.
   */
  ensureGroup(force = false): Promise<void> {
    if (this.#group === undefined || force) {
      const { client, lanes, keys, name } = this.#c.ctx;
      const checked = this.#group === undefined
        ? checkRecorded(`Cannot consume ${name}`, client, keys, lanes)
        : Promise.resolve();
      this.#group = checked.then(() => Promise.all(lanes.streams.map((s) => this.#create(s))))
        .then(() => {}, (err) => {
          this.#group = undefined;
          throw err;
        });
    }
    return this.#group;
  }

  #create(stream: string): Promise<void> {
    const { client, group } = this.#c.ctx;
    return client.xgroup("CREATE", stream, group, "0", "MKSTREAM").then(() => {}, async (err) => {
      const message = toError(err).message;
      if (message.includes("BUSYGROUP")) return;
      // At maxmemory Redis refuses XGROUP CREATE before it looks for the group: if the
      // group is there, workers may still drain the queue.
      if (isOutOfMemory(err) && await this.#groupExists(stream).catch(() => false)) return;
      throw err;
    });
  }

  async #groupExists(stream: string): Promise<boolean> {
    const { client, group } = this.#c.ctx;
    const groups = await client.xinfo("GROUPS", stream) as unknown[][];
    return groups.some((g) => {
      for (let i = 0; i + 1 < g.length; i += 2) if (g[i] === "name") return g[i + 1] === group;
      return false;
    });
  }

  /**
   * One blocking read for the room free now, for at most until `wakeAt` (local ms), and cut
   * short on time when a delayed job is due at `dueAt`. The entries it returns stay counted
   * in the window as requested until admitted: checking them may take a while, and a settle
   * must not read that room again meanwhile.
   */
  async read(wakeAt: number, dueAt: number): Promise<LaneEntries> {
    this.#woken = false;
    const blocking = await this.#line.connection();
    if (this.#idOn !== blocking) {
      this.#idOn = blocking;
      this.#id = undefined;
      blocking.on("close", () => {
        if (this.#idOn === blocking) this.#id = undefined;
      });
    }
    this.#id ??= Number(await blocking.client("ID"));
    if (this.#c.stopping) return [];
    const { window, held } = this.#c;
    const count = window.readRoom(held.size);
    if (count <= 0) return [];
    const block = Math.max(1, Math.min(MAX_BLOCK_MS, wakeAt - Date.now()));
    // Redis times blocked reads out on its own event loop tick (up to 100 ms late at hz 10):
    // when a delayed job is next due, a local timer cuts the read short on time instead.
    const timer = dueAt <= wakeAt && dueAt - Date.now() < MAX_BLOCK_MS
      ? setTimeout(() => this.interrupt(), Math.max(0, dueAt - Date.now()))
      : undefined;
    window.reserve(count);
    let entries: LaneEntries;
    try {
      entries = await this.#blockingRead(blocking, count, block);
    } catch (err) {
      window.free(count);
      throw err;
    } finally {
      this.#read = undefined;
      clearTimeout(timer);
    }
    let got = 0;
    for (const [, read] of entries) got += read.length;
    window.free(count - got);
    return entries;
  }

  /** Reads `count` entries, waiting up to `block` ms for the first if no lane has any. */
  async #blockingRead(blocking: Redis, count: number, block: number): Promise<LaneEntries> {
    const { ctx, name } = this.#c;
    const floor = this.#floor;
    if (floor.single) {
      if (this.#woken) return [];
      const sent = xreadgroup(blocking, [
        "GROUP",
        ctx.group,
        name,
        "COUNT",
        count,
        "BLOCK",
        block,
        "STREAMS",
        ctx.keys.stream,
        ">",
      ]).then((reply) => reply?.[0]?.[1] ?? []);
      this.#read = sent;
      const entries = await sent;
      return entries.length === 0 ? [] : [[0, entries]];
    }
    const { streams } = ctx.lanes;
    // Lanes with work are read without blocking, from the floor up, one lane lower each time a
    // read finds the floor drained, until the room is filled; only when a read of every lane
    // finds nothing does the read block. Entries read are ours whatever fails after them: they
    // are returned, to be admitted, and the failure is met by the next read.
    const read: LaneEntries = [];
    for (let need = count, bottom = false; need > 0 && !(bottom && read.length === 0);) {
      // Jobs read behind a settle meanwhile (its interrupt() cannot cut these passes short):
      // the loop hands them out first.
      if (this.#c.stopping || this.#c.buffer.length > 0) return read;
      bottom = floor.bottom;
      const pipeline = blocking.pipeline();
      floor.queue(pipeline, streams, ctx.group, name, need);
      const sent = pipeline.exec();
      this.#read = sent;
      let replies: [Error | null, unknown][];
      try {
        replies = (await sent) ?? [];
      } catch (err) {
        if (read.length > 0) return read;
        throw err;
      }
      const { entries, error } = floor.learn(replies, need);
      for (const lane of entries) {
        read.push(lane);
        need -= lane[1].length;
      }
      if (error && read.length > 0) return read;
      if (error) throw error;
      if (entries.length === 0 && bottom) break;
    }
    if (read.length > 0 || this.#c.stopping || this.#c.buffer.length > 0 || this.#woken) {
      return read;
    }
    // One entry of each lane at most: a wake-up may find several lanes with work (Redis 7.2 runs
    // an unblocked read again in full), and COUNT holds for each stream. The next read, without
    // blocking, fills the rest of the room from the highest lane.
    const sent = xreadgroup(blocking, [
      "GROUP",
      ctx.group,
      name,
      "COUNT",
      1,
      "BLOCK",
      block,
      "STREAMS",
      ...streams,
      ...streams.map(() => ">"),
    ]);
    this.#read = sent;
    return floor.woken(await sent);
  }

  /** Ends a blocking read now, as if it had timed out; the loop then looks again. */
  interrupt(): void {
    // Before the blocking read is sent, CLIENT UNBLOCK would find nothing to cut: the read
    // sees the flag instead, and returns at once.
    this.#woken = true;
    if (this.#read !== undefined && this.#id !== undefined) {
      this.#line.unblock(this.#id).catch(() => {});
    }
  }

  /**
   * Cuts a blocking read short with CLIENT UNBLOCK, sent again until `busy()` (the loop's
   * round under way) is over (the read may not have reached Redis yet), with a disconnect as
   * the last resort.
   */
  async unblock(busy: () => Promise<void> | undefined): Promise<void> {
    const deadline = Date.now() + 1_000;
    for (let round = busy(); round !== undefined; round = busy()) {
      if (this.#read !== undefined) {
        if (Date.now() > deadline || this.#id === undefined) {
          this.#line.disconnect();
          return;
        }
        await this.#line.unblock(this.#id).catch(() => {});
      }
      await settlesWithin(round, 25);
    }
  }

  /** A round went well: the next failure starts the backoff over. */
  succeeded(): void {
    this.#failures = 0;
  }

  /**
   * A round failed: a missing group (Redis restarted without persistence, or the stream was
   * deleted) is recreated; anything else is logged, and the loop waits with backoff, or until
   * `woken` resolves.
   */
  async recover(err: unknown, woken: Promise<void>): Promise<void> {
    if (this.#c.stopping) return;
    this.#line.failed(err);
    const { logger, name, group } = this.#c.ctx;
    if (toError(err).message.includes("NOGROUP")) {
      logger.warn(
        `sluice: queue ${name}: consumer group ${group} is missing (Redis restarted without persistence, or the stream was deleted); recreating it`,
      );
      try {
        await this.ensureGroup(true);
        return;
      } catch (again) {
        err = again;
      }
    }
    this.#failures++;
    const wait = retryWait(50, this.#failures, 2_000);
    if (this.#failures === 1 || this.#failures % 10 === 0) {
      logger.error(
        `sluice: queue ${name}: reading failed (${this.#failures} in a row), retrying in ${wait} ms`,
        err,
      );
    }
    await settlesWithin(woken, wait);
  }

  /** Closes the blocking connection. */
  close(): Promise<void> {
    return this.#line.close();
  }
}

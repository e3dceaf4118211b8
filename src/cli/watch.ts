/**
 * `sluice watch <queue>`: a live view of one queue, redrawn in place: its counts, rates per
 * second from its events, its workers, and while it drains a progress bar with a rate and an
 * ETA. Counts are read once per interval; rates come from the queue's events stream, followed
 * on one connection (no polling per job).
 *
 * @module
 */
import { delay } from "../async.ts";
import type { QueueEvent } from "../events.ts";
import { describeQueue, type QueueSummary } from "../queues.ts";
import { type Command, type Context, text } from "./_command.ts";
import { bar, duration, integer, type Io, paint, span, UsageError } from "./_io.ts";
import { workersTable } from "./queues.ts";

/** Rates are averaged over this window (ms). */
const WINDOW_MS = 5_000;

/** Counts of recent events, for rates per second. */
class Rates {
  #times = new Map<string, number[]>();

  add(type: string, at: number): void {
    let list = this.#times.get(type);
    if (list === undefined) this.#times.set(type, list = []);
    list.push(at);
  }

  /** Events per second of these types over the window before `now`. */
  per(now: number, ...types: string[]): number {
    let n = 0;
    for (const type of types) {
      const list = this.#times.get(type) ?? [];
      while (list.length > 0 && list[0]! < now - WINDOW_MS) list.shift();
      n += list.length;
    }
    return n / (WINDOW_MS / 1_000);
  }
}

/** What one frame shows. */
export interface WatchFrame {
  at: number;
  queue: QueueSummary;
  rates: { enqueued: number; started: number; completed: number; failed: number };
  /** While the queue drains: how far, how fast, and how long until empty. */
  draining?: { fraction: number; perSecond: number; etaMs: number };
}

/** A frame as text. */
export function frameText(io: Io, f: WatchFrame): string {
  const s = f.queue.stats;
  const state = s.paused ? paint(io, "yellow", "paused") : paint(io, "green", "running");
  const num = (n: number) => n.toLocaleString("en-US");
  let out = `${paint(io, "bold", `sluice watch ${f.queue.name}`)}  ${state}  ${
    paint(io, "dim", new Date(f.at).toISOString())
  }\n\n`;
  out += `  waiting ${paint(io, "blue", num(s.waiting).padStart(9))}   active ${
    paint(io, "cyan", num(s.active).padStart(7))
  }   delayed ${paint(io, "yellow", num(s.delayed).padStart(7))}   dead ${
    paint(io, s.dead > 0 ? "red" : "dim", num(s.dead).padStart(7))
  }\n`;
  const r = f.rates;
  out += `  per second: enqueued ${r.enqueued.toFixed(1)}  started ${
    r.started.toFixed(1)
  }  completed ${r.completed.toFixed(1)}  failed ${r.failed.toFixed(1)}\n`;
  if (f.draining) {
    const d = f.draining;
    out += `\n  draining ${bar(d.fraction)} ${Math.round(d.fraction * 100)}%  ${
      d.perSecond.toFixed(0)
    }/s  ETA ${span(d.etaMs)}\n`;
  }
  out += `\n${workersTable(io, f.queue.workers, f.at)}`;
  return out;
}

export const WATCH: Command = {
  interruptible: true,
  name: "watch",
  usage: "<queue>",
  summary: "a live view of a queue: counts, rates, workers, and drain progress",
  args: [1, 1],
  options: {
    interval: { type: "string", help: "time between redraws (default 1s)" },
    frames: { type: "string", help: "stop after this many frames (default: until Ctrl-C)" },
  },
  async run(ctx: Context) {
    const name = ctx.args[0]!;
    const every = text(ctx, "interval");
    const interval = every === undefined ? 1_000 : duration("interval", every);
    if (interval < 100 || interval > 3_600_000) {
      throw new UsageError(`--interval must be from 100ms to 1h, got ${JSON.stringify(every)}`);
    }
    const framesText = text(ctx, "frames");
    const frames = framesText === undefined ? Infinity : integer("frames", framesText, 1, 1e9);
    const client = await ctx.client();
    const queue = await ctx.queue(name);
    const rates = new Rates();
    const stop = new AbortController();
    const signal = AbortSignal.any([ctx.signal, stop.signal]);
    const follow = (async () => {
      const reader = queue.events({ signal }).getReader();
      try {
        while (true) {
          const { value, done } = await reader.read() as ReadableStreamReadResult<QueueEvent>;
          if (done) return;
          rates.add(value.type, Date.now());
        }
      } catch {
        // Stopped.
      } finally {
        reader.releaseLock();
      }
    })();
    let peak = 0;
    const redraw = ctx.io.tty && !ctx.json;
    if (redraw) ctx.io.out("\x1b[?25l");
    try {
      for (let n = 0; n < frames && !signal.aborted; n++) {
        if (n > 0) await delay(interval, { signal }).catch(() => {});
        if (signal.aborted) break;
        const summary = await describeQueue(client, name, ctx.prefix, ctx.group);
        const now = Date.now();
        const frame: WatchFrame = {
          at: now,
          queue: summary,
          rates: {
            enqueued: rates.per(now, "waiting"),
            started: rates.per(now, "active"),
            completed: rates.per(now, "completed"),
            failed: rates.per(now, "dead", "retrying"),
          },
        };
        const left = summary.stats.waiting;
        peak = Math.max(peak, left);
        const perSecond = frame.rates.completed + rates.per(now, "dead");
        if (left < peak && perSecond > 0) {
          frame.draining = {
            fraction: 1 - left / peak,
            perSecond,
            etaMs: left / perSecond * 1_000,
          };
        }
        if (ctx.json) ctx.io.out(JSON.stringify(frame) + "\n");
        else if (redraw) ctx.io.out(`\x1b[H\x1b[2J${frameText(ctx.io, frame)}`);
        else ctx.io.out(frameText(ctx.io, frame) + "\n");
      }
    } finally {
      if (redraw) ctx.io.out("\x1b[?25h");
      stop.abort();
      await follow;
    }
    return { json: undefined, text: "" };
  },
};

/**
 * What keeps the dashboard live: one follower of each queue's events, shared by every open
 * tab as Server-Sent Events, and the last hour of completions and failures read from the
 * events stream for sparklines.
 *
 * @module
 */
import type { Redis } from "ioredis";
import type { QueueEvent } from "../events.ts";
import type { Keys } from "../keys.ts";
import type { Queue } from "../queue.ts";

/** A tab listening to a queue: gets each event's JSON, or only one job's; `end` closes it. */
interface Listener {
  job: string | undefined;
  send(event: QueueEvent): void;
  end(): void;
}

/** One follower of a queue handle's events, and the tabs it feeds. */
interface Feed {
  listeners: Set<Listener>;
  stop: AbortController;
}

/**
 * One `queue.events()` follower per queue handle with listeners, whatever the number of tabs;
 * it stops when the last tab closes. If the follower ends on its own (its handle was closed),
 * its tabs' streams end too, and their EventSource reconnects to a live handle.
 */
export class LiveHub {
  #feeds = new Map<Queue, Feed>();

  /**
   * An SSE response of a queue's events (only job `job`'s, if given). It ends when the
   * client goes away, the follower ends, or `signal` aborts.
   */
  stream(queue: Queue, job: string | undefined, signal: AbortSignal): Response {
    const encoder = new TextEncoder();
    let listener: Listener | undefined;
    let ping: ReturnType<typeof setInterval> | undefined;
    let onAbort: (() => void) | undefined;
    const leave = () => {
      clearInterval(ping);
      if (onAbort) signal.removeEventListener("abort", onAbort);
      if (listener) this.#leave(queue, listener);
      listener = undefined;
    };
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        const write = (text: string) => {
          try {
            controller.enqueue(encoder.encode(text));
          } catch {
            leave();
          }
        };
        const end = () => {
          leave();
          try {
            controller.close();
          } catch {
            // Closed already.
          }
        };
        listener = { job, send: (event) => write(`data: ${JSON.stringify(event)}\n\n`), end };
        write(": connected\n\n");
        // A comment now and then keeps proxies from closing an idle stream.
        ping = setInterval(() => write(": ping\n\n"), 15_000);
        onAbort = end;
        signal.addEventListener("abort", onAbort, { once: true });
        this.#join(queue, listener);
      },
      cancel: leave,
    });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  }

  #join(queue: Queue, listener: Listener): void {
    const feed = this.#feeds.get(queue);
    if (feed !== undefined) {
      feed.listeners.add(listener);
    } else {
      const made: Feed = { listeners: new Set([listener]), stop: new AbortController() };
      this.#feeds.set(queue, made);
      (async () => {
        try {
          const reader = queue.events({ signal: made.stop.signal }).getReader();
          try {
            while (true) {
              const { value, done } = await reader.read();
              if (done) return;
              for (const l of made.listeners) {
                if (l.job === undefined || l.job === value.jobId) l.send(value);
              }
            }
          } finally {
            reader.releaseLock();
          }
        } catch {
          // Stopped, or the handle was closed.
        } finally {
          if (this.#feeds.get(queue) === made) this.#feeds.delete(queue);
          for (const l of [...made.listeners]) l.end();
        }
      })();
    }
  }

  #leave(queue: Queue, listener: Listener): void {
    const feed = this.#feeds.get(queue);
    if (feed === undefined || !feed.listeners.delete(listener)) return;
    if (feed.listeners.size === 0) {
      feed.stop.abort();
      this.#feeds.delete(queue);
    }
  }

  /** Stops every follower. */
  close(): void {
    for (const feed of this.#feeds.values()) feed.stop.abort();
    this.#feeds.clear();
  }
}

/** A queue's last hour, in minutes: completions and failures per minute, oldest first. */
export interface HourSeries {
  completed: number[];
  failed: number[];
  /**
   * The first minute the events cover (0 if the whole hour): the stream is capped, and a
   * queue may be younger than the hour.
   */
  from: number;
}

const MINUTES = 60;

/**
 * Counts a queue's completions and failures (retried or dead) per minute over the last hour:
 * from the per-minute counts settles keep (`keys.minutes`), or, for a queue that has none (no
 * settle with events on since this version), from its events stream: at most 10 steps of
 * 1,000 entries, newest first. The stream is capped (about 10,000 events by default), so on a
 * busy queue it covers less than an hour; `from` says where the data starts.
 */
export async function hourSeries(client: Redis, keys: Keys, now: number): Promise<HourSeries> {
  const completed = new Array<number>(MINUTES).fill(0);
  const failed = new Array<number>(MINUTES).fill(0);
  // The per-minute counts settles keep (a ring of 64 minutes), when there are any.
  const ring = await client.hgetall(keys.minutes);
  const minute = Math.floor(now / 60_000);
  let counted = false;
  for (let slot = 0; slot < 64; slot++) {
    const stamp = ring[`m${slot}`];
    if (stamp === undefined) continue;
    counted = true;
    const at = MINUTES - 1 - (minute - Number(stamp));
    if (at < 0 || at >= MINUTES) continue;
    completed[at]! += Number(ring[`c${slot}`] ?? 0);
    failed[at]! += Number(ring[`f${slot}`] ?? 0);
  }
  if (counted) return { completed, failed, from: 0 };
  const start = now - MINUTES * 60_000;
  let end = "+", oldest = now, full = false;
  for (let step = 0; step < 10; step++) {
    const entries = await client.xrevrange(keys.events, end, String(start), "COUNT", 1_000);
    for (const [id, flat] of entries) {
      const at = Number(id.split("-")[0]);
      oldest = Math.min(oldest, at);
      const minute = Math.min(MINUTES - 1, Math.floor((at - start) / 60_000));
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const type = flat[i]!.slice(0, flat[i]!.indexOf(" "));
        if (type !== "completed" && type !== "dead" && type !== "retrying") continue;
        // The value is a JSON array of ids: count them by their separators.
        const n = flat[i + 1]! === "[]" ? 0 : flat[i + 1]!.split('","').length;
        (type === "completed" ? completed : failed)[minute]! += n;
      }
    }
    if (entries.length < 1_000) break;
    end = `(${entries.at(-1)![0]}`;
    full = step === 9;
  }
  // The minutes before the stream's oldest entry are unknown: it was trimmed (capped), or the
  // queue is younger than the hour. So are those before the last step read, if 10 did not
  // reach the hour's start.
  const [first] = await client.xrange(keys.events, "-", "+", "COUNT", 1);
  const known = full ? oldest : first === undefined ? start : Number(first[0].split("-")[0]);
  const from = Math.min(MINUTES - 1, Math.max(0, Math.floor((known - start) / 60_000)));
  return { completed, failed, from };
}

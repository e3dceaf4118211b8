/**
 * Pub/sub over one subscriber connection per process and Redis, shared by every queue, consumer
 * and job handle in it. (On Redis Cluster this becomes sharded SSUBSCRIBE, in a later change.)
 *
 * @module
 */
import type { ScriptClient } from "../scripts/mod.ts";

/** Gets each message of a channel; `null` after a reconnect: messages may have been missed. */
export type Listener = (message: string | null) => void;

interface Channel {
  readonly listeners: Set<Listener>;
  /** Resolves once Redis confirmed the subscription. */
  ready: Promise<void>;
  /** The epoch in which Redis last confirmed the subscription; -1 before. */
  confirmed: number;
}

/** A process's subscriptions on one Redis. */
export class PubSub {
  #client: ScriptClient;
  #channels = new Map<string, Channel>();
  #epoch = 0;

  /** @param client A connection for the subscriber role, not yet connected. */
  constructor(client: ScriptClient) {
    this.#client = client;
    client.on("message", (channel: string, message: string) => {
      const entry = this.#channels.get(channel);
      if (entry !== undefined) { for (const listener of entry.listeners) listener(message); }
    });
    client.on("close", () => {
      this.#epoch++;
    });
    // ioredis subscribes again by itself after a reconnect; asking once more tells us when it
    // is confirmed. Listeners then get null: what was published meanwhile reached nobody.
    client.on("ready", () => {
      for (const [name, entry] of this.#channels) {
        if (entry.confirmed === this.#epoch) continue;
        const missed = entry.confirmed >= 0;
        this.#confirm(name, entry).then(() => {
          if (missed) { for (const listener of entry.listeners) listener(null); }
        }, () => {});
      }
    });
  }

  /**
   * Bumped on every disconnect. A listener that saw the same epoch before and after some
   * interval, with its channel confirmed, heard every message published in between.
   */
  get epoch(): number {
    return this.#epoch;
  }

  /** True if `channel` is subscribed and confirmed, with no disconnect since. */
  listening(channel: string): boolean {
    return this.#channels.get(channel)?.confirmed === this.#epoch;
  }

  /**
   * Listens on `channel`. Resolves once Redis confirmed the subscription, with a function that
   * stops listening (and unsubscribes once no listener is left).
   */
  async subscribe(channel: string, listener: Listener): Promise<() => Promise<void>> {
    let entry = this.#channels.get(channel);
    if (entry === undefined) {
      const created: Channel = { listeners: new Set(), ready: Promise.resolve(), confirmed: -1 };
      created.ready = this.#confirm(channel, created);
      created.ready.catch(() => {
        if (this.#channels.get(channel) === created && created.listeners.size === 0) {
          this.#channels.delete(channel);
        }
      });
      this.#channels.set(channel, created);
      entry = created;
    }
    const mine = entry;
    mine.listeners.add(listener);
    try {
      await mine.ready;
    } catch (err) {
      mine.listeners.delete(listener);
      if (mine.listeners.size === 0 && this.#channels.get(channel) === mine) {
        this.#channels.delete(channel);
      }
      throw err;
    }
    return async () => {
      mine.listeners.delete(listener);
      if (mine.listeners.size === 0 && this.#channels.get(channel) === mine) {
        this.#channels.delete(channel);
        await this.#client.unsubscribe(channel).catch(() => {});
      }
    };
  }

  /** Resolves once every message published before the call has reached the listeners. */
  async drain(): Promise<void> {
    await this.#client.ping().catch(() => {});
  }

  async #confirm(channel: string, entry: Channel): Promise<void> {
    const epoch = this.#epoch;
    await this.#client.subscribe(channel);
    if (epoch === this.#epoch) entry.confirmed = epoch;
  }
}

/**
 * Pub/sub for a process on one Redis: on a single Redis (or Sentinel), one subscriber
 * connection shared by every queue, consumer and job handle in it; on Redis Cluster, sharded
 * SSUBSCRIBE on one connection per slot in use (a queue's channels share its slot), to the
 * master that owns it, following it after a failover.
 *
 * @module
 */
import type { Cluster, Redis, RedisOptions } from "ioredis";
import { keySlot, SlotLink, type Watcher } from "./cluster.ts";
import { close } from "./connect.ts";

/** Gets each message of a channel; `null` after a reconnect: messages may have been missed. */
export type Listener = (message: string | null) => void;

/** Where subscriptions live: the connections, opened as needed. */
export interface Wire {
  /** True for sharded pub/sub (SSUBSCRIBE), as on Redis Cluster. */
  readonly sharded: boolean;
  /**
   * The connection `channel` is (to be) subscribed on: at once if it is open, so that a
   * SUBSCRIBE goes out before anything the caller sends next (see `subscribe`).
   */
  connection(channel: string): Redis | Promise<Redis>;
  /** The connections open now. */
  connections(): Redis[];
  /** Closes every connection. */
  close(): Promise<void>;
}

/** The wire of a single Redis: one subscriber connection for every channel. */
export function singleWire(subscriber: Redis): (watcher: Watcher) => Wire {
  return ({ opened: watch }) => {
    watch(subscriber);
    return {
      sharded: false,
      connection: () => subscriber,
      connections: () => [subscriber],
      close: () => close(subscriber),
    };
  };
}

/** The wire of a Redis Cluster: one link per slot in use, each to the slot's master. */
export function clusterWire(
  cluster: Cluster,
  options: RedisOptions,
): (watcher: Watcher) => Wire {
  return (watcher) => {
    const links = new Map<number, SlotLink>();
    return {
      sharded: true,
      connection(channel) {
        const slot = keySlot(channel);
        let link = links.get(slot);
        if (link === undefined) {
          link = new SlotLink(cluster, channel, options, watcher, true);
          links.set(slot, link);
        }
        return link.current ?? link.connection();
      },
      connections: () => [...links.values()].flatMap((l) => l.current ?? []),
      close: async () => {
        await Promise.all([...links.values()].map((link) => link.close()));
      },
    };
  };
}

interface Channel {
  readonly listeners: Set<Listener>;
  /** Resolves once Redis confirmed the subscription. */
  ready: Promise<void>;
  /** Confirmed, with no disconnect of its connection since. */
  live: boolean;
  /** Confirmed at least once. */
  heard: boolean;
  /** The connection it was last confirmed on. */
  on: Redis | undefined;
  /** A confirmation is under way. */
  confirming: boolean;
}

/** A process's subscriptions on one Redis (or Redis Cluster). */
export class PubSub {
  readonly #wire: Wire;
  #channels = new Map<string, Channel>();
  #epoch = 0;
  #closed = false;
  /** Per connection, the confirmations to end if it closes first. */
  #closing = new Map<Redis, Set<() => void>>();

  /** @param wire Where subscriptions live: `singleWire(...)` or `clusterWire(...)`. */
  constructor(wire: (watcher: Watcher) => Wire) {
    this.#wire = wire({
      opened: (connection) => this.#watch(connection),
      dropped: (connection) => this.#lost(connection),
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
    return this.#channels.get(channel)?.live === true;
  }

  /**
   * Listens on `channel`. Resolves once Redis confirmed the subscription, with a function that
   * stops listening (and unsubscribes once no listener is left). The SUBSCRIBE is written
   * before this returns if the connection is open.
   */
  async subscribe(channel: string, listener: Listener): Promise<() => Promise<void>> {
    let entry = this.#channels.get(channel);
    if (entry === undefined) {
      const created: Channel = {
        listeners: new Set(),
        ready: Promise.resolve(),
        live: false,
        heard: false,
        on: undefined,
        confirming: false,
      };
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
        const connection = mine.on;
        if (connection === undefined) return;
        const stop = this.#wire.sharded
          ? connection.sunsubscribe(channel)
          : connection.unsubscribe(channel);
        await stop.catch(() => {});
      }
    };
  }

  /** Resolves once every message published before the call has reached the listeners. */
  async drain(): Promise<void> {
    await Promise.all(this.#wire.connections().map((c) => c.ping().catch(() => {})));
  }

  /** Closes the subscriber connections. */
  close(): Promise<void> {
    this.#closed = true;
    return this.#wire.close();
  }

  /** Resolves true once `command` succeeds, or false if `connection` closes first. */
  #unlessClosed(connection: Redis, command: Promise<unknown>): Promise<boolean> {
    return new Promise((resolve, reject) => {
      let waiting = this.#closing.get(connection);
      if (waiting === undefined) this.#closing.set(connection, waiting = new Set());
      const closed = () => resolve(false);
      waiting.add(closed);
      command.then(() => {
        waiting.delete(closed);
        resolve(true);
      }, (err) => {
        waiting.delete(closed);
        reject(err);
      });
    });
  }

  #watch(connection: Redis): void {
    const deliver = (channel: string, message: string) => {
      const entry = this.#channels.get(channel);
      if (entry !== undefined) { for (const listener of entry.listeners) listener(message); }
    };
    // "message" on a single Redis, "smessage" on Redis Cluster (sharded pub/sub).
    connection.on("message", deliver);
    connection.on("smessage", deliver);
    connection.on("close", () => this.#lost(connection));
    connection.on("ready", () => this.#revive());
  }

  /**
   * A connection closed, or was dropped for another (a slot moved): its subscriptions are no
   * longer heard, and confirmations waiting on it are sent again elsewhere. A connection
   * dropped while it was reconnecting never settles what it had queued, nor closes again.
   */
  #lost(connection: Redis): void {
    // One listener per connection, however many confirmations wait on it.
    const waiting = this.#closing.get(connection);
    if (waiting !== undefined) { for (const closed of waiting) closed(); }
    this.#closing.delete(connection);
    this.#epoch++;
    for (const entry of this.#channels.values()) {
      if (entry.on === connection) entry.live = false;
    }
    this.#revive();
  }

  /**
   * Subscribes again every channel a disconnect cut off (ioredis resubscribes on its own after
   * a reconnect; asking once more tells us when it is confirmed, and a moved slot needs it).
   * Listeners then get null: what was published meanwhile reached nobody.
   */
  #revive(): void {
    for (const [name, entry] of this.#channels) {
      if (entry.live || entry.confirming) continue;
      const missed = entry.heard;
      this.#confirm(name, entry).then(() => {
        if (missed && entry.live) { for (const listener of entry.listeners) listener(null); }
      }, () => {});
    }
  }

  async #confirm(channel: string, entry: Channel): Promise<void> {
    entry.confirming = true;
    try {
      for (;;) {
        const epoch = this.#epoch;
        // No await before the SUBSCRIBE is written when the connection is open: a result()
        // call counts on its SUBSCRIBE going out before the registration it sends right after.
        const open = this.#wire.connection(channel);
        const connection = open instanceof Promise ? await open : open;
        const confirmed = await this.#unlessClosed(
          connection,
          this.#wire.sharded ? connection.ssubscribe(channel) : connection.subscribe(channel),
        );
        if (this.#closed) throw new Error("Connection is closed.");
        // The connection closed first: ioredis never settles an SSUBSCRIBE that got MOVED (the
        // slot left that master), and the link moves. Subscribe where the channel lives now.
        if (!confirmed) continue;
        entry.on = connection;
        entry.heard = true;
        if (epoch === this.#epoch) entry.live = true;
        break;
      }
    } finally {
      entry.confirming = false;
    }
    // A disconnect came while it was under way: once more.
    if (!entry.live) this.#revive();
  }
}

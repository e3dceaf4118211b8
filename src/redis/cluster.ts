/**
 * Redis Cluster: the command client (an ioredis `Cluster`), and `SlotLink`, a plain connection
 * to the master that owns one hash slot, for what a `Cluster` cannot carry well: blocking reads
 * (which would hold up its shared connection to that node) and sharded subscriptions. A link
 * follows its slot to the new owner after a failover or a resharding.
 *
 * @module
 */
import { Cluster, type ClusterNode, type ClusterOptions, Redis, type RedisOptions } from "ioredis";
import { retryWait } from "../backoff.ts";
import { isPassing } from "./health.ts";
import { close, type RedisClusterConfig } from "./connect.ts";

/**
 * The hash slot of `key` (0 to 16383), as Redis Cluster computes it: CRC16 (XMODEM) of the
 * key, or of its hash tag (the part between the first `{` and the next `}`, if not empty),
 * modulo 16384.
 *
 * @example
 * ```ts
 * import { keySlot } from "./cluster.ts";
 * console.log(keySlot("123456789")); // 12739 (CRC16 0x31C3)
 * console.log(keySlot("sluice:{mail}:stream") === keySlot("{mail}")); // true
 * ```
 */
export function keySlot(key: string): number {
  let bytes = new TextEncoder().encode(key);
  const open = bytes.indexOf(0x7b); // {
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1); // }
    if (close > open + 1) bytes = bytes.subarray(open + 1, close);
  }
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc % 16384;
}

/** The ioredis `Cluster` for one role of a process, connecting when first used. */
export function openCluster(config: RedisClusterConfig, connectionName: string): Cluster {
  const nodes: ClusterNode[] = config.cluster.map((node) => {
    if (typeof node !== "string") return { host: node.host ?? "127.0.0.1", port: node.port };
    const url = new URL(node);
    return { host: url.hostname || "127.0.0.1", port: Number(url.port || 6379) };
  });
  const given = (config.options ?? {}) as ClusterOptions;
  return new Cluster(nodes, {
    // Slot moves that no command trips over (a master demoted to replica while idle) are
    // still noticed, and links follow them.
    slotsRefreshInterval: 5_000,
    ...given,
    lazyConnect: true,
    redisOptions: { ...given.redisOptions, connectionName },
  });
}

/** Who wants to know of a link's connections. */
export interface Watcher {
  /** A connection was opened (not yet connected). */
  opened(connection: Redis): void;
  /**
   * A connection was dropped for one to another node. It emits no "close" if it had closed
   * already, and what it had queued is never settled: treat it as closed.
   */
  dropped(connection: Redis): void;
}

/** Per `Cluster`, what to call on each slot map refresh: one listener, however many links. */
const followers = new WeakMap<Cluster, Set<() => void>>();

function following(cluster: Cluster): Set<() => void> {
  let set = followers.get(cluster);
  if (set === undefined) {
    const created = new Set<() => void>();
    cluster.on("refresh", () => {
      for (const follow of created) follow();
    });
    followers.set(cluster, created);
    set = created;
  }
  return set;
}

/**
 * A plain connection to the master that owns one slot of a Redis Cluster, opened when first
 * asked for. When the connection is lost, or the cluster's slot map (refreshed by ioredis on
 * MOVED and every few seconds, and by the link when its connection fails) names another
 * master, the link drops it and opens one to the new owner.
 */
export class SlotLink {
  readonly #cluster: Cluster;
  readonly #slot: number;
  readonly #options: RedisOptions;
  readonly #watcher: Watcher | undefined;
  #connection: Redis | undefined;
  /** The `host:port` of the node the connection goes to. */
  #at: string | undefined;
  #opening: Promise<Redis> | undefined;
  #closed = false;
  readonly #follow = () => this.#check();

  /**
   * @param cluster The process's `Cluster` for this Redis Cluster.
   * @param key Any key of the slot (a queue's stream key).
   * @param options The role's connection options.
   * @param watcher Told of every connection the link opens, at once (to add listeners), and
   *   of every one it drops.
   * @param eager Open a new connection at once when the slot moves (a subscriber must
   *   subscribe again), instead of when next asked for.
   */
  constructor(
    cluster: Cluster,
    key: string,
    options: RedisOptions,
    watcher?: Watcher,
    readonly eager = false,
  ) {
    this.#cluster = cluster;
    this.#slot = keySlot(key);
    this.#options = options;
    this.#watcher = watcher;
    following(cluster).add(this.#follow);
  }

  /** The `host:port` the link's connection goes to, if open. */
  get at(): string | undefined {
    return this.#at;
  }

  /** The connection to the slot's master, opened if need be. */
  connection(): Promise<Redis> {
    if (this.#connection?.status === "end") this.#connection = undefined; // disconnected by hand
    if (this.#connection !== undefined) return Promise.resolve(this.#connection);
    this.#opening ??= this.#open().finally(() => this.#opening = undefined);
    return this.#opening;
  }

  /** The connection now, if one is open. */
  get current(): Redis | undefined {
    return this.#connection?.status === "end" ? undefined : this.#connection;
  }

  /**
   * A command on the link failed: if the error says the slot may have moved (MOVED, a lost
   * connection, a node that is down or now a replica), ask the cluster where it lives now.
   */
  failed(err: unknown): void {
    if (isPassing(err)) this.#refresh();
  }

  /**
   * Sends `CLIENT UNBLOCK id` through the cluster's own connection to the link's node. Resolves
   * to false if the cluster has no connection to that node (the caller may then disconnect).
   */
  async unblock(id: number): Promise<boolean> {
    const at = this.#at;
    const node = at === undefined
      ? undefined
      : this.#cluster.nodes("master").find((n) => `${n.options.host}:${n.options.port}` === at);
    if (node === undefined) return false;
    // 0 means the connection was not blocked (the read had ended already): nothing to do.
    await node.client("UNBLOCK", id);
    return true;
  }

  /** Closes the connection; the link opens none after this. */
  async close(): Promise<void> {
    this.#closed = true;
    following(this.#cluster).delete(this.#follow);
    const connection = this.#connection ?? await this.#opening?.catch(() => undefined);
    this.#connection = undefined;
    if (connection !== undefined) await close(connection);
  }

  async #open(): Promise<Redis> {
    let owner = this.#owner();
    if (owner === undefined) {
      // The cluster has not connected yet: any command makes it load the slot map first.
      await this.#cluster.ping();
      owner = this.#owner();
    }
    if (owner === undefined) {
      throw new Error(`sluice: no Redis Cluster master serves slot ${this.#slot}`);
    }
    if (this.#closed) throw new Error("Connection is closed.");
    const cut = owner.lastIndexOf(":");
    const connection = new Redis({
      ...this.#cluster.options.redisOptions,
      ...this.#options,
      host: owner.slice(0, cut),
      port: Number(owner.slice(cut + 1)),
      lazyConnect: true,
      // Every failed attempt asks the cluster where the slot lives now: after a failover
      // the link moves to the new master instead of calling the dead one forever.
      retryStrategy: (times) => {
        this.#refresh();
        return retryWait(50, times, 2_000);
      },
    });
    connection.on("error", () => {}); // failures reach the link's users through commands
    connection.on("close", () => this.#refresh());
    // An SSUBSCRIBE answered MOVED: the slot left this master (ioredis leaves that call
    // pending, and says so with this event).
    connection.on("moved", () => this.#refresh());
    this.#connection = connection;
    this.#at = owner;
    this.#watcher?.opened(connection);
    connection.connect().catch(() => {});
    return connection;
  }

  /** The `host:port` of the slot's master in the cluster's slot map. */
  #owner(): string | undefined {
    return this.#cluster.slots[this.#slot]?.[0];
  }

  #refresh(): void {
    if (this.#closed || this.#cluster.status === "end") return;
    this.#cluster.refreshSlotsCache();
  }

  /** The slot map changed: if the slot moved, drop the connection to its old master. */
  #check(): void {
    const connection = this.#connection;
    if (this.#closed || connection === undefined) return;
    const owner = this.#owner();
    if (owner === undefined || owner === this.#at) return;
    this.#connection = undefined;
    this.#at = undefined;
    connection.disconnect();
    this.#watcher?.dropped(connection);
    if (this.eager) this.connection().catch(() => {});
  }
}

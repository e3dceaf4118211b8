/**
 * Bounded reads the admin API shares: SCAN steps on the node that holds a queue, the
 * priorities recorded in Redis, the group's last delivered entry, and the items of groups'
 * lines.
 *
 * @module
 */
import type { Cluster, Redis } from "ioredis";
import { fieldsToRecord } from "./codec.ts";
import type { Keys } from "./keys.ts";
import { type Lanes, lanesOf } from "./priority.ts";

/** One bounded step: the most entries or keys a read asks Redis for at a time. */
export const STEP = 1_000;

/**
 * The most stream entries or zset members one read asks for: an XRANGE of 1,000 whole job
 * entries took Redis about 5 ms on a queue of a million jobs (slowlog), 200 about 1 ms.
 */
export const ENTRY_STEP = 200;

/**
 * The queue's priorities as recorded in Redis (not as this process was told): the admin reads
 * and bulk actions cover every stream the queue has.
 */
export async function recordedLanes(client: Redis, keys: Keys): Promise<Lanes> {
  const recorded = await client.get(keys.priorities);
  let names: string[] | undefined;
  try {
    const parsed = recorded === null ? undefined : JSON.parse(recorded);
    if (Array.isArray(parsed) && parsed.length > 0) names = parsed.map(String);
  } catch {
    // Written by hand, not JSON: read the plain stream only.
  }
  try {
    return lanesOf("Cannot read the priorities", keys, names);
  } catch {
    return lanesOf("Cannot read the priorities", keys);
  }
}

/** The consumer group's last delivered entry in a stream ("0-0" before any read). */
export async function lastDelivered(client: Redis, stream: string, group: string): Promise<string> {
  const groups = await client.xinfo("GROUPS", stream).catch(() => []) as unknown[][];
  const info = groups.map(fieldsToRecord).find((g) => g.name === group);
  return String(info?.["last-delivered-id"] ?? "0-0");
}

/**
 * Walks the keys matching `match` (a pattern within one queue's hash tag) with SCAN, calling
 * `each` with every step's keys.
 */
export async function scanKeys(
  client: Redis,
  match: string,
  each: (keys: string[]) => Promise<void>,
): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await scanStep(client, cursor, match);
    cursor = next;
    if (keys.length > 0) await each(keys);
  } while (cursor !== "0");
}

/** One SCAN step over the keys matching `match`, on the node that holds the queue. */
export async function scanStep(
  client: Redis,
  cursor: string,
  match: string,
): Promise<[string, string[]]> {
  const [next, keys] = await nodeOf(client, match).scan(cursor, "MATCH", match, "COUNT", STEP);
  return [String(next), keys];
}

/**
 * The connection that holds keys matching `match` (all of a queue's keys share one hash tag):
 * on Redis Cluster, the master serving that tag's slot.
 */
function nodeOf(client: Redis, match: string): Redis {
  if (!(client as unknown as { isCluster?: boolean }).isCluster) return client;
  const cluster = client as unknown as Cluster & { slots: string[][] };
  const tag = /\{([^}]+)\}/.exec(match)?.[1] ?? match;
  const node = cluster.slots[slotOf(tag)]?.[0];
  const found = cluster.nodes("master").find((n) => `${n.options.host}:${n.options.port}` === node);
  if (found === undefined) {
    throw new Error(
      `Cannot scan the keys of {${tag}}: no master of the cluster serves its slot ${slotOf(tag)}`,
    );
  }
  return found;
}

/** Redis Cluster's slot of a hash tag: CRC16 (XMODEM) mod 16384. */
export function slotOf(tag: string): number {
  let crc = 0;
  for (const byte of new TextEncoder().encode(tag)) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
    crc &= 0xffff;
  }
  return crc % 16384;
}

/** The fields whose values a line item in the short form holds, in order (see scripts/_gate.ts). */
const SHORT_FIELDS = ["v", "id", "task", "data", "attempt", "enq", "group"];

/**
 * A waiting job's fields as its group's line stores them (see scripts/_gate.ts): MessagePack
 * strings one after another, names and values (the full form), or the integer 1 and then the
 * values of SHORT_FIELDS (the short form); or, as earlier versions wrote them, a JSON array.
 *
 * @returns The flat field list, or undefined if the item cannot be read.
 */
export function lineFields(item: Uint8Array): string[] | undefined {
  if (item[0] === 0x01) {
    const values = msgpackStrings(item, 1);
    if (values?.length !== SHORT_FIELDS.length) return undefined;
    return SHORT_FIELDS.flatMap((name, i) => [name, values[i]!]);
  }
  if (item[0] === 0x5b) {
    try {
      const parsed = JSON.parse(new TextDecoder().decode(item));
      return Array.isArray(parsed) ? parsed.map(String) : undefined;
    } catch {
      return undefined;
    }
  }
  return msgpackStrings(item, 0);
}

/** The MessagePack strings of `item` from byte `start` on, or undefined if it holds another type. */
function msgpackStrings(item: Uint8Array, start: number): string[] | undefined {
  const out: string[] = [];
  const view = new DataView(item.buffer, item.byteOffset, item.byteLength);
  const text = new TextDecoder();
  let i = start;
  while (i < item.length) {
    const b = item[i]!;
    let len: number, head: number;
    if (b >= 0xa0 && b <= 0xbf) [len, head] = [b & 0x1f, 1];
    else if (b === 0xd9 || b === 0xc4) [len, head] = [item[i + 1]!, 2];
    else if (b === 0xda || b === 0xc5) [len, head] = [view.getUint16(i + 1), 3];
    else if (b === 0xdb || b === 0xc6) [len, head] = [view.getUint32(i + 1), 5];
    else return undefined;
    if (i + head + len > item.length) return undefined;
    out.push(text.decode(item.subarray(i + head, i + head + len)));
    i += head + len;
  }
  return out;
}

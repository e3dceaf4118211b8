/**
 * Test helpers for Redis Cluster: CLUSTER NODES parsed, and which master owns a slot.
 */
import { inspect } from "./_helpers.ts";

/** One line of CLUSTER NODES. */
export interface NodeLine {
  id: string;
  port: number;
  flags: string[];
  /** The id of its master, if a replica. */
  master: string;
  slots: [number, number][];
}

export function clusterNodes(reply: unknown): NodeLine[] {
  return String(reply).trim().split("\n").map((line) => {
    const [id, address, flags, master, , , , , ...slots] = line.split(" ");
    return {
      id: id!,
      port: Number(address!.split("@")[0]!.split(":")[1]),
      flags: flags!.split(","),
      master: master!,
      slots: slots.filter((s) => !s.startsWith("[")).map((s) => {
        const [from, to = from] = s.split("-");
        return [Number(from), Number(to)];
      }),
    };
  });
}

export function ownerOf(nodes: NodeLine[], slot: number): NodeLine | undefined {
  return nodes.find((n) =>
    n.flags.includes("master") && !n.flags.includes("fail") &&
    n.slots.some(([from, to]) => from <= slot && slot <= to)
  );
}

/** Resolves to `fn()`'s value, or false if it throws: for probes that may hit a dead node. */
export async function attempt<T>(fn: () => Promise<T>): Promise<T | false> {
  try {
    return await fn();
  } catch {
    return false;
  }
}

/** The master that owns `key`'s slot now, asked of the node at `url`. */
export async function masterOf(url: string, key: string): Promise<NodeLine> {
  await using admin = inspect(url);
  const slot = Number(await admin.call("CLUSTER", "KEYSLOT", key));
  const owner = ownerOf(clusterNodes(await admin.call("CLUSTER", "NODES")), slot);
  if (owner === undefined) throw new Error(`no master owns slot ${slot}`);
  return owner;
}

/**
 * Priorities: a queue's named priorities, lowest first, each with its own ready stream under
 * the queue's hash tag. The lowest priority's stream is the queue's plain stream, so a queue
 * with one priority (the default) has exactly the layout, and the hot path, of a queue with
 * none. A consumer reads the streams highest first (read.ts); each stream is a "lane", and
 * lanes are numbered in read order: lane 0 is the highest priority.
 *
 * The list is recorded in Redis at first use (`{q}:priorities`), and a producer or consumer
 * with another list is refused: a worker that did not know a priority would never read its
 * stream.
 *
 * @module
 */
import { ValidationError } from "./errors.ts";
import { type Keys, NAME, NAME_RULE } from "./keys.ts";
import { show } from "./_options.ts";

/** The most priorities a queue may have: each one is a stream every read looks at. */
export const MAX_PRIORITIES = 16;

/** A queue's priorities as its streams. */
export interface Lanes {
  /** The priority names, lowest first, as given; empty for a queue with one unnamed priority. */
  readonly names: readonly string[];
  /** The ready streams in read order: the highest priority's first. */
  readonly streams: readonly string[];
  /** The priority name of each lane; undefined for the one lane of a queue without names. */
  readonly labels: readonly (string | undefined)[];
  /** The lane of a job enqueued with no priority (`defaultPriority`). */
  readonly fallback: number;
  /** The list as recorded in Redis: JSON of `names`, or "" for none. */
  readonly record: string;
}

/**
 * Checks `priorities` and `defaultPriority`, and lays out their streams.
 *
 * @throws {ValidationError} If the list is empty, not a list, over MAX_PRIORITIES, has a bad or
 * duplicate name, or `defaultPriority` is not one of it (or given without a list).
 *
 * @example
 * ```ts
 * import { lanesOf } from "./priority.ts";
 * import { queueKeys } from "./keys.ts";
 * const lanes = lanesOf("Cannot create queue mail", queueKeys("mail", "sluice"), ["bulk", "urgent"]);
 * console.log(lanes.streams); // ["sluice:{mail}:stream:urgent", "sluice:{mail}:stream"]
 * ```
 */
export function lanesOf(
  action: string,
  keys: Keys,
  priorities?: readonly string[],
  defaultPriority?: string,
): Lanes {
  if (priorities === undefined) {
    if (defaultPriority !== undefined) {
      throw new ValidationError(
        `${action}: defaultPriority ${show(defaultPriority)} needs a priorities list`,
      );
    }
    return { names: [], streams: [keys.stream], labels: [undefined], fallback: 0, record: "" };
  }
  if (!Array.isArray(priorities) || priorities.length === 0) {
    throw new ValidationError(
      `${action}: priorities must be a non-empty list of names, lowest first, got ${
        show(priorities)
      }`,
    );
  }
  if (priorities.length > MAX_PRIORITIES) {
    throw new ValidationError(
      `${action}: priorities may hold at most ${MAX_PRIORITIES} names, got ${priorities.length}`,
    );
  }
  const seen = new Set<string>();
  for (const name of priorities) {
    if (typeof name !== "string" || !NAME.test(name)) {
      throw new ValidationError(
        `${action}: each priority must be ${NAME_RULE}, got ${show(name)}`,
      );
    }
    if (seen.has(name)) {
      throw new ValidationError(
        `${action}: priority ${show(name)} appears twice in ${show(priorities)}`,
      );
    }
    seen.add(name);
  }
  const names = [...priorities];
  const lowest = names.length - 1;
  // Read order: the highest priority first; the lowest one's stream is the plain stream.
  const labels = names.toReversed();
  const streams = labels.map((name, lane) => lane === lowest ? keys.stream : keys.lane(name));
  const chosen = defaultPriority ?? names[0]!;
  const fallback = labels.indexOf(chosen);
  if (fallback < 0) {
    throw new ValidationError(
      `${action}: defaultPriority must be one of ${show(names)}, got ${show(defaultPriority)}`,
    );
  }
  return { names, streams, labels, fallback, record: JSON.stringify(names) };
}

/**
 * The lane of a job enqueued with `priority` (undefined: the default one).
 *
 * @throws {ValidationError} If the priority is not one of the queue's.
 */
export function laneOf(action: string, lanes: Lanes, priority: unknown): number {
  if (priority === undefined) return lanes.fallback;
  const lane = typeof priority === "string" ? lanes.labels.indexOf(priority) : -1;
  if (lane < 0 || lanes.names.length === 0) {
    throw new ValidationError(
      lanes.names.length === 0
        ? `${action}: priority ${
          show(priority)
        } is unknown: this queue has no priorities (give the Queue a priorities list)`
        : `${action}: priority ${show(priority)} is unknown: this queue's priorities are ${
          show(lanes.names)
        }`,
    );
  }
  return lane;
}

/** What checking the recorded list needs of a Redis client. */
export interface PriorityClient {
  call(command: string, ...args: string[]): Promise<unknown>;
}

/**
 * Records the queue's priority list in Redis if none is, and refuses a different one. A list
 * is recorded by the first producer or consumer that has one; one without a list records
 * nothing, and is refused if a list is recorded.
 *
 * @throws {ValidationError} If Redis holds another list.
 */
export async function checkRecorded(
  action: string,
  client: PriorityClient,
  keys: Keys,
  lanes: Lanes,
): Promise<void> {
  const recorded = lanes.record === ""
    ? await client.call("GET", keys.priorities)
    : await client.call("SET", keys.priorities, lanes.record, "NX", "GET");
  // Nil: none is recorded (GET, so none is ours too), or ours was recorded just now (SET NX).
  const theirs = typeof recorded === "string" ? recorded : lanes.record;
  if (theirs === lanes.record) return;
  const mine = lanes.record === "" ? "none" : lanes.record;
  throw new ValidationError(
    `${action}: the priorities given here (${mine}) differ from the ones recorded for this queue in Redis (${
      theirs === "" ? "none" : theirs
    }); every producer and worker of a queue must use the same list, lowest first. To change it, drain the queue and delete ${keys.priorities}`,
  );
}

/**
 * One view of the queue per lane, in lane order: the queue itself for the lowest priority's
 * lane, and for each other lane a copy whose `keys.stream` is that lane's stream and whose
 * `pri` is its name. Every per-stream script's argument builder then works on any lane
 * unchanged.
 *
 * @example
 * ```ts
 * import { laneViews, lanesOf } from "./priority.ts";
 * import { queueKeys } from "./keys.ts";
 * const keys = queueKeys("mail", "sluice");
 * const views = laneViews({ keys, lanes: lanesOf("", keys, ["bulk", "urgent"]) });
 * console.log(views.map((v) => v.keys.stream)); // ["sluice:{mail}:stream:urgent", "sluice:{mail}:stream"]
 * ```
 */
export function laneViews<Q extends { readonly keys: Keys; readonly lanes: Lanes }>(
  q: Q,
): (Q & { readonly pri?: string })[] {
  const { streams, labels } = q.lanes, lowest = streams.length - 1;
  return streams.map((stream, lane) =>
    lane === lowest ? q : { ...q, keys: { ...q.keys, stream }, pri: labels[lane]! }
  );
}

/** The held-job key of an entry: its id in lane 0, else the id and the lane (entry ids of
 * different streams may be equal). */
export function heldKey(lane: number, entryId: string): string {
  return lane === 0 ? entryId : `${entryId}/${lane}`;
}

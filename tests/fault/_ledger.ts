/**
 * The fault tests' ledger: what was enqueued, and every commit the "work" task made, kept in a
 * Redis of its own (never the one under test), so killing or emptying that one cannot touch
 * the count. Each test tallies lost, duplicated and unexpected jobs from it, checks every
 * duplicate against the faults it caused, and adds one row to the reliability table.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { startRedis, type TestRedis } from "../../src/testing.ts";
import { waitForRedis } from "../_helpers.ts";

/** `n` "work" jobs of `ms` each, with ids `<prefix>0`, `<prefix>1`, ... */
export function work(n: number, ms: number, prefix = "j"): { id: string; data: { ms: number } }[] {
  return Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, data: { ms } }));
}

/** One commit, as the "work" task logged it. */
export interface Commit {
  id: string;
  deliveries: number;
  pid: number;
  /** The stream entry id of the delivery. */
  entry?: string;
  /** When it committed, epoch ms. */
  at?: number;
  /** The job's priority, on a queue with priorities. */
  priority?: string;
  polluted?: boolean;
}

/** How a scenario's verdict differs from the default one. */
export interface VerdictOptions {
  /**
   * Why this scenario may lose jobs (e.g. "asynchronous replication": a failover may drop the
   * last writes before it): their loss is counted and reported, not failed on.
   */
  mayLose?: string;
  /** With `mayLose`, the only jobs that may be lost: any other loss fails. */
  atRisk?: ReadonlySet<string>;
  /** Explains a duplicate none of whose commits shows a redelivery, from all its commits. */
  explains?: (commits: Commit[]) => boolean;
}

/**
 * A duplicate with no redelivery: two first deliveries of the same entry. A stream entry is
 * delivered as new only once, unless the master that delivered it died before its replica
 * heard of the delivery; the promoted replica then delivers it again.
 */
export function deliveredTwiceAsNew(commits: Commit[]): boolean {
  const first = commits.filter((c) => c.deliveries === 1 && c.entry !== undefined);
  return new Set(first.map((c) => c.entry)).size < first.length;
}

/** What a run came to. */
export interface Tally {
  jobs: number;
  /** Enqueued, never committed. */
  lost: string[];
  /** Commits beyond the first, summed over jobs. */
  duplicated: number;
  /** Committed, never enqueued. */
  unexpected: string[];
  /** Duplicated jobs none of whose commits shows a redelivery. */
  unexplained: string[];
}

/** One row of the reliability table. */
export interface FaultRow {
  scenario: string;
  fault: string;
  jobs: number;
  lost: number;
  duplicated: number;
  pass: boolean;
}

export class Ledger implements AsyncDisposable {
  readonly #server: TestRedis;
  readonly client: Redis;
  readonly enqueued = new Set<string>();

  private constructor(server: TestRedis) {
    this.#server = server;
    this.client = new Redis(server.url);
  }

  static async start(): Promise<Ledger> {
    return new Ledger(await startRedis());
  }

  get url(): string {
    return this.#server.url;
  }

  /** Notes jobs as enqueued (call it once the enqueue has returned). */
  add(ids: Iterable<string>): void {
    for (const id of ids) this.enqueued.add(id);
  }

  /** Jobs committed at least once. */
  async committed(): Promise<number> {
    return await this.client.hlen("commits");
  }

  /** Waits until `n` distinct jobs have committed. */
  async waitForCommits(n: number, timeout = 60_000): Promise<void> {
    await waitForRedis(async () => (await this.committed()) >= n, `${n} commits`, timeout);
  }

  async log(): Promise<Commit[]> {
    return (await this.client.lrange("log", 0, -1)).map((line) => JSON.parse(line));
  }

  async tally(explains?: (commits: Commit[]) => boolean): Promise<Tally> {
    const counts = await this.client.hgetall("commits");
    const log = await this.log();
    const lost = [...this.enqueued].filter((id) => counts[id] === undefined);
    const unexpected = Object.keys(counts).filter((id) => !this.enqueued.has(id));
    let duplicated = 0;
    const unexplained: string[] = [];
    for (const [id, count] of Object.entries(counts)) {
      if (Number(count) <= 1) continue;
      duplicated += Number(count) - 1;
      const commits = log.filter((c) => c.id === id);
      if (commits.some((c) => c.deliveries > 1) || explains?.(commits)) continue;
      unexplained.push(id);
    }
    return { jobs: this.enqueued.size, lost, duplicated, unexpected, unexplained };
  }

  /**
   * Asserts the run passed: nothing lost (unless the scenario `mayLose` jobs, for the reason
   * given: then they are counted, not asserted, or only those `atRisk` may be lost), nothing
   * unexpected, every duplicate shows a redelivery (or `explains` accepts it) and there are no
   * more of them than `inFlight` (jobs held at the faults). Adds the row to the report either
   * way.
   */
  async verdict(
    scenario: string,
    fault: string,
    inFlight: number,
    options: VerdictOptions = {},
  ): Promise<Tally> {
    const tally = await this.tally(options.explains);
    const { mayLose, atRisk } = options;
    // Lost jobs that count against the run.
    const lost = mayLose === undefined
      ? tally.lost
      : tally.lost.filter((id) => atRisk !== undefined && !atRisk.has(id));
    const pass = lost.length === 0 && tally.unexpected.length === 0 &&
      tally.unexplained.length === 0 && tally.duplicated <= inFlight;
    await report({
      scenario,
      fault,
      jobs: tally.jobs,
      lost: tally.lost.length,
      duplicated: tally.duplicated,
      pass,
    });
    assert.deepEqual(lost, [], mayLose ? "lost jobs that were not at risk" : "lost jobs");
    assert.deepEqual(tally.unexpected, [], "unexpected jobs");
    assert.deepEqual(tally.unexplained, [], "duplicates without a redelivery");
    assert.ok(
      tally.duplicated <= inFlight,
      `${tally.duplicated} duplicates, more than the ${inFlight} jobs in flight at the faults`,
    );
    return tally;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.client.disconnect();
    await this.#server.stop();
  }
}

/** Appends a row to the report file named by SLUICE_FAULTS_REPORT, if set. */
export async function report(row: FaultRow): Promise<void> {
  const file = Deno.env.get("SLUICE_FAULTS_REPORT");
  if (file) await Deno.writeTextFile(file, JSON.stringify(row) + "\n", { append: true });
}

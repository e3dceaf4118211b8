/**
 * CLI commands about whole queues: `queues`, `stats`, `workers` and `schedules`.
 *
 * @module
 */
import { describeQueue, listQueues, type QueueSummary } from "../queues.ts";
import type { WorkerInfo } from "../stats.ts";
import type { Command, Context } from "./_command.ts";
import { type Io, paint, plain, span, table, when } from "./_io.ts";

const QUEUES: Command = {
  name: "queues",
  usage: "",
  summary: "every queue under the prefix, with its counts",
  args: [0, 0],
  async run(ctx) {
    await ctx.client();
    const found = await listQueues(ctx.url, { prefix: ctx.prefix, group: ctx.group });
    const rows = found.map((q) => [
      q.name,
      String(q.stats.waiting),
      String(q.stats.active),
      String(q.stats.delayed),
      q.stats.dead > 0 ? paint(ctx.io, "red", String(q.stats.dead)) : "0",
      String(q.workers.length),
      q.stats.paused ? paint(ctx.io, "yellow", "paused") : "running",
    ]);
    return {
      json: found,
      text: found.length === 0 ? `No queues under prefix ${ctx.prefix}.\n` : table(
        ctx.io,
        ["QUEUE", "WAITING", "ACTIVE", "DELAYED", "DEAD", "WORKERS", "STATE"],
        rows,
      ),
    };
  },
};

/** A queue's summary, as `stats` prints it. */
export function summaryText(io: Io, q: QueueSummary): string {
  const s = q.stats;
  const lines: [string, string][] = [
    ["state", s.paused ? paint(io, "yellow", "paused") : paint(io, "green", "running")],
    ["waiting", String(s.waiting)],
    ["active", String(s.active)],
    ["delayed", String(s.delayed)],
    ["dead", s.dead > 0 ? paint(io, "red", String(s.dead)) : "0"],
    ["workers", String(s.workers)],
    ["oldest waiting", s.oldestWaitingMs === null ? "-" : span(s.oldestWaitingMs)],
  ];
  if (q.priorities.length > 0) lines.push(["priorities", q.priorities.join(", ")]);
  if (s.waitingByPriority) {
    lines.push([
      "waiting by priority",
      Object.entries(s.waitingByPriority).map(([p, n]) => `${p} ${n}`).join(", "),
    ]);
  }
  return `${paint(io, "bold", `queue ${q.name}`)}\n` +
    lines.map(([k, v]) => `  ${k.padEnd(20)}${v}`).join("\n") + "\n";
}

const STATS: Command = {
  name: "stats",
  usage: "<queue>",
  summary: "one queue's counts by state",
  args: [1, 1],
  async run(ctx) {
    const q = await describeQueue(await ctx.client(), ctx.args[0]!, ctx.prefix, ctx.group);
    return { json: q, text: summaryText(ctx.io, q) };
  },
};

/** Workers as a table. */
export function workersTable(io: Io, workers: WorkerInfo[], now = Date.now()): string {
  if (workers.length === 0) return "No live workers.\n";
  return table(
    io,
    ["WORKER", "HOST", "PID", "RUNNING", "CONCURRENCY", "PROCESSED", "FAILED", "UP"],
    workers.map((w) =>
      [
        w.id,
        w.host ?? "",
        String(w.pid ?? ""),
        String(w.running ?? ""),
        String(w.concurrency ?? ""),
        String(w.processed ?? ""),
        String(w.failed ?? ""),
        w.startedAt ? span(now - w.startedAt) : "",
      ].map(plain)
    ),
  );
}

const WORKERS: Command = {
  name: "workers",
  usage: "<queue>",
  summary: "a queue's live workers",
  args: [1, 1],
  async run(ctx) {
    const workers = await (await ctx.queue(ctx.args[0]!)).workers();
    return { json: workers, text: workersTable(ctx.io, workers) };
  },
};

const SCHEDULES: Command = {
  name: "schedules",
  usage: "<queue>",
  summary: "a queue's cron and interval schedules",
  args: [1, 1],
  async run(ctx: Context) {
    const list = await (await ctx.queue(ctx.args[0]!)).schedules.list();
    const text = list.length === 0 ? "No schedules.\n" : table(
      ctx.io,
      ["SCHEDULE", "TASK", "EVERY", "NEXT", "LAST", "STATE"],
      list.map((s) => [
        s.id,
        s.task,
        s.cron ?? (s.every !== undefined ? span(s.every) : ""),
        s.next ? when(s.next.getTime()) : "-",
        s.last ? when(s.last.getTime()) : "-",
        s.paused ? paint(ctx.io, "yellow", "paused") : "active",
      ]),
    );
    return { json: list, text };
  },
};

/** The commands about whole queues. */
export const QUEUE_COMMANDS: Command[] = [QUEUES, STATS, WORKERS, SCHEDULES];

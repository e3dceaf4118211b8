/**
 * CLI commands about jobs: `jobs` (a page of one state) and `job` (everything about one).
 *
 * @module
 */
import { LIST_STATES, type ListState } from "../admin.ts";
import type { JobDetails } from "../inspect.ts";
import { type Command, text } from "./_command.ts";
import {
  integer,
  type Io,
  paint,
  plain,
  span,
  stateColor,
  table,
  UsageError,
  when,
} from "./_io.ts";

/** A payload cut to fit one line of a table. */
function brief(data: string | undefined, size = 40): string {
  if (data === undefined) return "";
  const line = data.replace(/\s+/g, " ");
  return line.length > size ? `${line.slice(0, size - 1)}…` : line;
}

const JOBS: Command = {
  name: "jobs",
  usage: "<queue> <state>",
  summary: `a page of jobs in one state (${LIST_STATES.join(", ")})`,
  args: [2, 2],
  options: {
    task: { type: "string", help: "only jobs of this task" },
    group: { type: "string", help: "only jobs of this group" },
    limit: { type: "string", help: "the most jobs listed, 1 to 1000 (default 50)" },
    cursor: { type: "string", help: "where the previous page ended (it prints it)" },
  },
  async run(ctx) {
    const [name, state] = ctx.args as [string, string];
    if (!LIST_STATES.includes(state as ListState)) {
      throw new UsageError(
        `the state must be one of ${LIST_STATES.join(", ")}, got ${JSON.stringify(state)}`,
      );
    }
    const limit = text(ctx, "limit");
    const options = {
      ...(text(ctx, "task") !== undefined ? { task: text(ctx, "task")! } : {}),
      ...(text(ctx, "group") !== undefined ? { group: text(ctx, "group")! } : {}),
      ...(limit !== undefined ? { limit: integer("limit", limit, 1, 1_000) } : {}),
      ...(text(ctx, "cursor") !== undefined ? { cursor: text(ctx, "cursor")! } : {}),
    };
    const page = await (await ctx.queue(name)).jobs(state as ListState, options);
    const now = Date.now();
    const rows = page.jobs.map((j) => {
      const at = j.state === "delayed"
        ? `due in ${span(j.dueAt! - now)}`
        : j.finishedAt !== undefined
        ? `${span(now - j.finishedAt)} ago`
        : j.idleMs !== undefined
        ? `idle ${span(j.idleMs)}`
        : j.enqueuedAt !== undefined
        ? `${span(now - j.enqueuedAt)} ago`
        : "";
      const extra = j.state === "dead"
        ? `${j.reason}: ${brief(j.error?.split("\n")[0], 50)}`
        : j.state === "active"
        ? j.worker ?? ""
        : brief(j.data);
      return [j.id, j.task, j.group ?? "", String(j.attempt ?? ""), at, extra].map(plain);
    });
    const head = ["ID", "TASK", "GROUP", "ATTEMPT", "WHEN", state === "dead" ? "WHY" : "DATA"];
    if (state === "active") head[5] = "WORKER";
    let out = page.jobs.length === 0
      ? `No ${state} jobs${page.cursor ? " on this page" : ""}.\n`
      : table(ctx.io, head, rows);
    if (page.cursor !== undefined) {
      out += paint(ctx.io, "dim", `more: --cursor ${page.cursor}`) + "\n";
    }
    return { json: page, text: out };
  },
};

/** Every string inside a value as plain text (see `plain`). */
function plainDeep(value: unknown): unknown {
  if (typeof value === "string") return plain(value);
  if (Array.isArray(value)) return value.map(plainDeep);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plainDeep(v)]));
  }
  return value;
}

/** One job's details, for a terminal. */
export function detailsText(io: Io, details: JobDetails): string {
  // Every value from Redis as plain text first: only this function's own colours get through.
  const d = plainDeep(details) as JobDetails;
  const s = d.status;
  const lines: [string, string][] = [
    ["state", paint(io, stateColor(s.state), s.state)],
    ["task", s.task ?? ""],
  ];
  if (s.group !== undefined) lines.push(["group", s.group]);
  if (s.attempt !== undefined) lines.push(["attempt", String(s.attempt)]);
  if (s.deliveries !== undefined) lines.push(["deliveries", String(s.deliveries)]);
  if (s.worker !== undefined) lines.push(["worker", s.worker]);
  if (s.enqueuedAt !== undefined) lines.push(["enqueued", when(s.enqueuedAt)]);
  if (s.startedAt !== undefined) lines.push(["started", when(s.startedAt)]);
  if (s.finishedAt !== undefined) lines.push(["finished", when(s.finishedAt)]);
  if (s.dueAt !== undefined) lines.push(["due", when(s.dueAt)]);
  if (s.progress !== undefined) lines.push(["progress", JSON.stringify(s.progress)]);
  if (s.reason !== undefined) lines.push(["reason", s.reason]);
  let out = `${paint(io, "bold", `job ${s.id}`)}\n` +
    lines.map(([k, v]) => `  ${k.padEnd(12)}${v}`).join("\n") + "\n";
  const pretty = (json: string) => {
    try {
      return JSON.stringify(JSON.parse(json), null, 2);
    } catch {
      return json;
    }
  };
  const indent = (block: string) => block.split("\n").map((l) => `  ${l}`).join("\n") + "\n";
  if (d.data !== undefined) out += `${paint(io, "bold", "data")}\n${indent(pretty(d.data))}`;
  if (d.result !== undefined) out += `${paint(io, "bold", "result")}\n${indent(pretty(d.result))}`;
  if (s.error !== undefined) out += `${paint(io, "bold", "error")}\n${indent(s.error)}`;
  if (d.timeline.length > 0) {
    out += `${paint(io, "bold", "timeline")}\n` + d.timeline.map((step) =>
      `  ${new Date(step.at).toISOString()}  ${
        paint(io, stateColor(step.type), step.type.padEnd(10))
      }${step.detail ?? ""}`
    ).join("\n") + "\n";
  }
  return out;
}

const JOB: Command = {
  name: "job",
  usage: "<queue> <id>",
  summary: "one job: state, data, result or error, attempts and a timeline",
  args: [2, 2],
  async run(ctx) {
    const [name, id] = ctx.args as [string, string];
    const details = await (await ctx.queue(name)).jobDetails(id);
    if (details === undefined) {
      return {
        json: { error: `job ${id} not found in queue ${name}` },
        text: `Job ${id} not found in queue ${name} (never enqueued, or its record expired).\n`,
        code: 1,
      };
    }
    return { json: details, text: detailsText(ctx.io, details) };
  },
};

/** The commands about jobs. */
export const JOB_COMMANDS: Command[] = [JOBS, JOB];

/**
 * CLI commands that change a queue: `retry`, `cancel`, `drain`, `clean`, `obliterate`,
 * `pause`, `resume` and `enqueue`. Destructive ones ask first on a terminal, unless --yes,
 * and show a progress bar on a terminal while they work.
 *
 * @module
 */
import type { CleanState } from "../bulk.ts";
import { type Command, type Context, text } from "./_command.ts";
import { duration, Progress, UsageError } from "./_io.ts";

/** True to go on: --yes, nobody at a terminal to ask (stdin is not one), or a yes. */
async function approved(ctx: Context, question: string): Promise<boolean> {
  if (ctx.yes || !ctx.io.interactive) return true;
  // Ctrl-C at the question is a no.
  const { promise: interrupted, resolve } = Promise.withResolvers<boolean>();
  const no = () => resolve(false);
  ctx.signal.addEventListener("abort", no, { once: true });
  try {
    return await Promise.race([ctx.io.ask(question), interrupted]);
  } finally {
    ctx.signal.removeEventListener("abort", no);
  }
}

const DECLINED = { json: { error: "not confirmed" }, text: "Nothing done.\n", code: 1 };

/** Runs a bulk action with a progress bar. */
async function withProgress<T>(
  ctx: Context,
  label: string,
  total: number | undefined,
  work: (onProgress: (done: number) => void) => Promise<T>,
): Promise<T> {
  const progress = new Progress(ctx.io, label, total);
  let done = 0;
  try {
    return await work((n) => progress.update(done = n));
  } catch (err) {
    if (!ctx.signal.aborted) throw err;
    throw new Error(`${label} interrupted after ${done} done; run it again to finish`);
  } finally {
    progress.end();
  }
}

const RETRY: Command = {
  interruptible: true,
  name: "retry",
  usage: "<queue> [<id>]",
  summary: "replay one dead letter by job id, or with --dead all of them (filtered)",
  args: [1, 2],
  options: {
    dead: { type: "boolean", help: "replay every dead letter (with --task or --group: those)" },
    task: { type: "string", help: "with --dead: only letters of this task" },
    group: { type: "string", help: "with --dead: only letters of this group" },
  },
  async run(ctx) {
    const [name, id] = ctx.args as [string, string | undefined];
    const task = text(ctx, "task"), group = text(ctx, "group");
    if ((id === undefined) === (ctx.values.dead !== true)) {
      throw new UsageError("give a job id, or --dead (not both)");
    }
    if (id !== undefined && (task !== undefined || group !== undefined)) {
      throw new UsageError("--task and --group go with --dead, not with a job id");
    }
    const queue = await ctx.queue(name);
    if (id !== undefined) {
      const n = await queue.retry("dead", { id, signal: ctx.signal });
      if (n === 0) {
        return {
          json: { retried: 0, error: `job ${id} is not a dead letter of queue ${name}` },
          text: `Job ${id} is not a dead letter of queue ${name}.\n`,
          code: 1,
        };
      }
      return { json: { retried: n }, text: `Replayed job ${id}.\n` };
    }
    const total = await queue.dead.count();
    const which = [task && `task ${task}`, group && `group ${group}`].filter(Boolean).join(", ");
    if (
      !await approved(
        ctx,
        `Replay ${
          which ? `the dead letters of ${which}` : `all ${total} dead letters`
        } of queue ${name}?`,
      )
    ) {
      return DECLINED;
    }
    const retried = await withProgress(
      ctx,
      "retrying",
      task || group ? undefined : total,
      (onProgress) =>
        queue.retry("dead", {
          ...(task !== undefined ? { task } : {}),
          ...(group !== undefined ? { group } : {}),
          signal: ctx.signal,
          onProgress,
        }),
    );
    return { json: { retried }, text: `Replayed ${retried} dead letter(s).\n` };
  },
};

const CANCEL: Command = {
  name: "cancel",
  usage: "<queue> <id>",
  summary: "cancel one job (a running one is stopped by its worker)",
  args: [2, 2],
  async run(ctx) {
    const [name, id] = ctx.args as [string, string];
    const outcome = await (await ctx.queue(name)).job(id).cancel();
    const text = outcome.state === "unknown"
      ? `Job ${id} not found in queue ${name}.\n`
      : outcome.cancelled
      ? `Cancelled job ${id} (it was ${outcome.state}).\n`
      : `Job ${id} was already ${outcome.state}: nothing done.\n`;
    return { json: outcome, text, code: outcome.state === "unknown" ? 1 : 0 };
  },
};

const DRAIN: Command = {
  interruptible: true,
  name: "drain",
  usage: "<queue>",
  summary: "cancel every waiting and delayed job (running jobs and dead letters stay)",
  args: [1, 1],
  async run(ctx) {
    const queue = await ctx.queue(ctx.args[0]!);
    const s = await queue.stats();
    if (
      !await approved(
        ctx,
        `Drain queue ${queue.name}: cancel ${s.waiting} waiting and ${s.delayed} delayed jobs?`,
      )
    ) {
      return DECLINED;
    }
    const counts = await withProgress(
      ctx,
      "draining",
      s.waiting + s.delayed,
      (onProgress) => queue.drain({ signal: ctx.signal, onProgress }),
    );
    return {
      json: counts,
      text: `Drained ${counts.waiting} waiting and ${counts.delayed} delayed job(s).\n`,
    };
  },
};

const CLEAN: Command = {
  interruptible: true,
  name: "clean",
  usage: "<queue> <completed|cancelled|dead>",
  summary: "delete finished records or dead letters older than --older-than",
  args: [2, 2],
  options: {
    "older-than": { type: "string", help: "required: age such as 7d, 12h or 0 (all)" },
  },
  async run(ctx) {
    const [name, state] = ctx.args as [string, string];
    if (state !== "completed" && state !== "cancelled" && state !== "dead") {
      throw new UsageError(
        `the state must be completed, cancelled or dead, got ${JSON.stringify(state)}`,
      );
    }
    const age = text(ctx, "older-than");
    if (age === undefined) throw new UsageError("--older-than is required (0 for all)");
    const olderThan = duration("older-than", age);
    const queue = await ctx.queue(name);
    if (!await approved(ctx, `Delete ${state} jobs of queue ${name} older than ${age}?`)) {
      return DECLINED;
    }
    const deleted = await withProgress(
      ctx,
      "cleaning",
      state === "dead" ? await queue.dead.count() : undefined,
      (onProgress) =>
        queue.clean(state as CleanState, { olderThan, signal: ctx.signal, onProgress }),
    );
    return { json: { deleted }, text: `Deleted ${deleted} ${state} job(s).\n` };
  },
};

const OBLITERATE: Command = {
  interruptible: true,
  name: "obliterate",
  usage: "<queue>",
  summary: "delete every key of a queue (refused while workers are live, unless --force)",
  args: [1, 1],
  options: { force: { type: "boolean", help: "even while live workers are attached" } },
  async run(ctx) {
    const queue = await ctx.queue(ctx.args[0]!);
    if (
      !await approved(ctx, `Obliterate queue ${queue.name}: delete every job and setting it has?`)
    ) {
      return DECLINED;
    }
    const deleted = await withProgress(
      ctx,
      "deleting keys",
      undefined,
      (onProgress) =>
        queue.obliterate({ force: ctx.values.force === true, signal: ctx.signal, onProgress }),
    );
    return { json: { deleted }, text: `Obliterated queue ${queue.name}: ${deleted} key(s).\n` };
  },
};

function pauseCommand(name: "pause" | "resume"): Command {
  return {
    name,
    usage: "<queue>",
    summary: name === "pause"
      ? "pause a queue: no worker starts a job until resumed"
      : "resume a paused queue",
    args: [1, 1],
    async run(ctx) {
      const queue = await ctx.queue(ctx.args[0]!);
      const changed = name === "pause" ? await queue.pause() : await queue.resume();
      const done = name === "pause" ? "paused" : "resumed";
      return {
        json: { changed, paused: name === "pause" },
        text: changed
          ? `Queue ${queue.name} ${done}.\n`
          : `Queue ${queue.name} was ${name === "pause" ? "paused" : "running"} already.\n`,
      };
    },
  };
}

const ENQUEUE: Command = {
  name: "enqueue",
  usage: "<queue> <task> <json>",
  summary: "enqueue one job with JSON data",
  args: [3, 3],
  options: {
    delay: { type: "string", help: "run it later: a duration such as 30s or 2h" },
    priority: { type: "string", help: "a priority of the queue's list" },
    id: { type: "string", help: "the job id (a second enqueue of it is deduplicated)" },
  },
  async run(ctx) {
    const [name, task, json] = ctx.args as [string, string, string];
    let data: unknown;
    try {
      data = JSON.parse(json);
    } catch (err) {
      throw new UsageError(`the data must be JSON: ${(err as Error).message}`);
    }
    const delay = text(ctx, "delay"), priority = text(ctx, "priority"), id = text(ctx, "id");
    const queue = await ctx.queue(name);
    const handle = await queue.enqueue(task, data, {
      ...(delay !== undefined ? { delay: duration("delay", delay) } : {}),
      ...(priority !== undefined ? { priority } : {}),
      ...(id !== undefined ? { id } : {}),
    });
    const out = { id: handle.id, duplicate: handle.duplicate, dueAt: handle.dueAt ?? null };
    return {
      json: out,
      text: handle.duplicate
        ? `Job ${handle.id} exists already: nothing enqueued.\n`
        : `Enqueued job ${handle.id}.\n`,
    };
  },
};

/** The commands that change a queue. */
export const ACTION_COMMANDS: Command[] = [
  RETRY,
  CANCEL,
  DRAIN,
  CLEAN,
  OBLITERATE,
  pauseCommand("pause"),
  pauseCommand("resume"),
  ENQUEUE,
];

/**
 * The sluice CLI: inspect and operate queues from a terminal or a script.
 *
 * ```sh
 * deno run -A jsr:@sluice/sluice/cli queues
 * deno run -A jsr:@sluice/sluice/cli jobs mail dead --task welcome --json
 * ```
 *
 * Every command takes `--redis URL` (or `REDIS_URL`), `--prefix`, `--consumer-group`,
 * `--json` and `--help`. Exit codes: 0 on success, 1 on an operational error (Redis unreachable, a job not
 * found, a refusal), 2 on a usage error. Colour only on a terminal, and never with NO_COLOR.
 * Destructive commands ask first on a terminal, unless `--yes`.
 *
 * @example Run a command in-process
 * ```ts
 * import { main } from "@sluice/sluice/cli";
 * import { startRedis } from "@sluice/sluice/testing";
 * await using redis = await startRedis();
 * const code = await main(["queues", "--redis", redis.url, "--json"]);
 * console.log(code); // 0
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { Queue } from "../queue.ts";
import { openQueue } from "../queues.ts";
import { share, type SharedRedis } from "../redis/connect.ts";
import { ValidationError } from "../errors.ts";
import type { ScriptClient } from "../scripts/mod.ts";
import type { Command, Context, OptionSpec } from "./_command.ts";
import { type Io, paint, printable, processIo, UsageError } from "./_io.ts";

export type { Io } from "./_io.ts";
import { QUEUE_COMMANDS } from "./queues.ts";
import { JOB_COMMANDS } from "./jobs.ts";
import { ACTION_COMMANDS } from "./actions.ts";
import { WATCH } from "./watch.ts";
import { DASHBOARD } from "./dashboard.ts";

const COMMANDS: Command[] = [
  ...QUEUE_COMMANDS,
  ...JOB_COMMANDS,
  ...ACTION_COMMANDS,
  WATCH,
  DASHBOARD,
];

const COMMON: Record<string, OptionSpec> = {
  redis: { type: "string", help: "Redis URL (default: $REDIS_URL or redis://127.0.0.1:6379)" },
  prefix: { type: "string", help: "key prefix of the queues (default: sluice)" },
  "consumer-group": { type: "string", help: "the workers' consumer group (default: sluice)" },
  json: { type: "boolean", help: "machine-readable output" },
  yes: { type: "boolean", short: "y", help: "do not ask before destructive actions" },
  help: { type: "boolean", short: "h", help: "show help" },
};

/**
 * How sluice's checks of its input word their errors ("Cannot <action>: <why>"), unlike the
 * runtime's own TypeErrors ("Cannot read properties of undefined").
 */
const OWN_CHECK = /^Cannot [^:(]+: /;

/** How long the CLI waits for Redis to answer before it gives up (ms). */
const REACH_MS = 3_000;

/**
 * Runs one CLI command.
 *
 * @example
 * ```ts
 * import { main } from "@sluice/sluice/cli";
 * console.log(await main(["stats"])); // 2: a usage error (stats takes a queue name)
 * ```
 *
 * @param argv The arguments, as `Deno.args`.
 * @param io Where output goes (the process's terminal by default).
 * @returns The exit code: 0 success, 1 operational error, 2 usage error.
 */
export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    io.out(overview(io));
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    io.err(`error: unknown command ${JSON.stringify(name)}\n\n${overview(io)}`);
    return 2;
  }
  let values: Record<string, string | boolean | undefined>, args: string[];
  try {
    const parsed = parseArgs({
      args: rest,
      options: { ...COMMON, ...command.options },
      allowPositionals: true,
      strict: true,
    });
    values = parsed.values as typeof values;
    args = parsed.positionals;
  } catch (err) {
    io.err(`error: ${(err as Error).message}\n\n${usage(io, command)}`);
    return 2;
  }
  if (values.help) {
    io.out(usage(io, command));
    return 0;
  }
  const json = values.json === true;
  if (args.length < command.args[0] || args.length > command.args[1]) {
    io.err(
      `error: ${command.name} takes ${
        command.args[0] === command.args[1]
          ? command.args[0]
          : `${command.args[0]} to ${command.args[1]}`
      } argument(s), got ${args.length}\n\n${usage(io, command)}`,
    );
    return 2;
  }
  const url = (values.redis as string | undefined) ?? Deno.env.get("REDIS_URL") ??
    "redis://127.0.0.1:6379";
  const prefix = (values.prefix as string | undefined) ?? "sluice";
  const group = (values["consumer-group"] as string | undefined) ?? "sluice";
  const queues: Queue[] = [];
  let shared: SharedRedis | undefined;
  let reached: Promise<ScriptClient> | undefined;
  const interrupt = new AbortController();
  // Ctrl-C stops an interruptible command cleanly; a second one ends the process at once.
  const onSignal = () => {
    if (interrupt.signal.aborted) Deno.exit(130);
    interrupt.abort(new Error("interrupted"));
  };
  if (command.interruptible) Deno.addSignalListener("SIGINT", onSignal);
  const ctx: Context = {
    args,
    values,
    io,
    json,
    yes: values.yes === true,
    url,
    prefix,
    group,
    signal: interrupt.signal,
    client: () => reached ??= reach(shared ??= share(url), url),
    queue: async (queueName) => {
      const queue = await openQueue(await ctx.client(), queueName, {
        redis: url,
        prefix,
        group,
        logger: "text",
      });
      queues.push(queue);
      return queue;
    },
  };
  try {
    const output = await command.run(ctx);
    if (json && output.json !== undefined) io.out(JSON.stringify(output.json, null, 2) + "\n");
    else if (!json) io.out(printable(output.text));
    return output.code ?? 0;
  } catch (err) {
    // sluice's own checks of what it was given say "Cannot <action>: <why>"; other errors of
    // these classes are faults, not usage errors.
    const usageError = err instanceof UsageError || err instanceof ValidationError ||
      (err instanceof TypeError || err instanceof RangeError) && OWN_CHECK.test(err.message);
    const message = err instanceof Error ? err.message : String(err);
    if (json) io.out(JSON.stringify({ error: message }) + "\n");
    io.err(`${paint(io, "red", "error")}: ${printable(message)}\n`);
    if (err instanceof UsageError) io.err(`\n${usage(io, command)}`);
    return usageError ? 2 : 1;
  } finally {
    if (command.interruptible) Deno.removeSignalListener("SIGINT", onSignal);
    await Promise.all(queues.map((q) => q.close()));
    await shared?.release();
  }
}

/** The shared connection, once Redis answers a PING; an error naming the URL if it does not. */
async function reach(shared: SharedRedis, url: string): Promise<ScriptClient> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Cannot reach Redis at ${url}: no answer within ${REACH_MS} ms`)),
      REACH_MS,
    );
  });
  try {
    await Promise.race([shared.command.ping(), timeout]);
    return shared.command;
  } finally {
    clearTimeout(timer);
  }
}

function overview(io: Io): string {
  const lines = COMMANDS.map((c) => `  ${(c.name + " " + c.usage).padEnd(44)}${c.summary}`);
  return `${paint(io, "bold", "sluice")}: inspect and operate sluice queues\n\n` +
    `Usage: sluice <command> [arguments] [options]\n\nCommands:\n${lines.join("\n")}\n\n` +
    `Options of every command:\n${options(COMMON)}\n` +
    `Run sluice <command> --help for a command's own options.\n`;
}

function usage(io: Io, command: Command): string {
  const own = command.options ? `\nOptions:\n${options(command.options)}\n` : "\n";
  return `${paint(io, "bold", `sluice ${command.name} ${command.usage}`)}\n  ${command.summary}\n` +
    own + `Options of every command:\n${options(COMMON)}\n`;
}

function options(specs: Record<string, OptionSpec>): string {
  return Object.entries(specs).map(([name, spec]) => {
    const flag = `${spec.short ? `-${spec.short}, ` : ""}--${name}${
      spec.type === "string" ? " <value>" : ""
    }`;
    return `  ${flag.padEnd(28)}${spec.help}`;
  }).join("\n");
}

if (import.meta.main) Deno.exit(await main(Deno.args));

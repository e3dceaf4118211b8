/**
 * The shape of a CLI command, and what it is given to run.
 *
 * @module
 */
import type { Queue } from "../queue.ts";
import type { ScriptClient } from "../scripts/mod.ts";
import type { Io } from "./_io.ts";

/** An option a command takes, as `node:util` parseArgs describes it, with its help. */
export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  help: string;
}

/** What a command prints: `json` with --json, else `text`. */
export interface Output {
  json: unknown;
  text: string;
  /** The exit code, 0 unless set. */
  code?: number;
}

/** What a running command is given. */
export interface Context {
  /** The positional arguments after the command name. */
  args: string[];
  /** The parsed options. */
  values: Record<string, string | boolean | undefined>;
  io: Io;
  /** --json: machine-readable output. */
  json: boolean;
  /** --yes: no confirmation. */
  yes: boolean;
  /** The Redis URL. */
  url: string;
  prefix: string;
  group: string;
  /** The shared command connection (scripts defined), already known to answer. */
  client(): Promise<ScriptClient>;
  /** A queue handle, closed when the command ends. */
  queue(name: string): Promise<Queue>;
  /** Aborts on SIGINT. */
  signal: AbortSignal;
}

/** One command of the CLI. */
export interface Command {
  name: string;
  /** The arguments, as in `jobs <queue> <state>`. */
  usage: string;
  summary: string;
  /** How many positional arguments it takes. */
  args: [min: number, max: number];
  /**
   * True if it stops cleanly when `signal` aborts (Ctrl-C). Other commands keep Ctrl-C's
   * default: the process ends at once.
   */
  interruptible?: boolean;
  options?: Record<string, OptionSpec>;
  run(ctx: Context): Promise<Output>;
}

/** A string option's value, or undefined. */
export function text(ctx: Context, name: string): string | undefined {
  const value = ctx.values[name];
  return typeof value === "string" ? value : undefined;
}

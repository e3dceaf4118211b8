/**
 * What every CLI command shares: where output goes, colour, tables, durations, confirmation
 * and progress bars.
 *
 * @module
 */

/** A mistake in how the command was called: exit code 2, with the usage. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Where a command writes, and what the terminal can do. */
export interface Io {
  /** Writes to stdout. */
  out(text: string): void;
  /** Writes to stderr. */
  err(text: string): void;
  /** True if stdout is a terminal: tables, colour and redraws. */
  readonly tty: boolean;
  /** True if stderr is a terminal: progress bars. */
  readonly errTty: boolean;
  /** True if colour is on: stdout is a terminal and NO_COLOR is unset or empty. */
  readonly color: boolean;
  /** True if stdin is a terminal: someone can answer a question. */
  readonly interactive: boolean;
  /** Asks a yes/no question on stderr and reads the answer from stdin: true for y or yes. */
  ask(question: string): Promise<boolean>;
}

const encoder = new TextEncoder();

/** The process's own terminal. */
export function processIo(): Io {
  const tty = Deno.stdout.isTerminal();
  const noColor = Deno.env.get("NO_COLOR");
  return {
    out: (text) => Deno.stdout.writeSync(encoder.encode(text)),
    err: (text) => Deno.stderr.writeSync(encoder.encode(text)),
    tty,
    errTty: Deno.stderr.isTerminal(),
    color: tty && (noColor === undefined || noColor === ""),
    interactive: Deno.stdin.isTerminal(),
    ask: async (question) => {
      Deno.stderr.writeSync(encoder.encode(`${question} [y/N] `));
      const buffer = new Uint8Array(256);
      const n = await Deno.stdin.read(buffer);
      const answer = new TextDecoder().decode(buffer.subarray(0, n ?? 0)).trim().toLowerCase();
      return answer === "y" || answer === "yes";
    },
  };
}

/**
 * A value from Redis as plain text, before it is painted: every control character (escape
 * sequences included) but newlines and tabs becomes "?".
 *
 * @example
 * ```ts
 * import { plain } from "./_io.ts";
 * console.log(plain("a\x1b[8mb")); // "a?[8mb"
 * ```
 */
export function plain(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, "?");
}

/**
 * Text from Redis made safe for a terminal: control characters (escape sequences that could
 * move the cursor or retitle the window) become "?", except newlines and tabs, and the colour
 * codes `paint` adds.
 */
export function printable(text: string): string {
  return text.replace(
    // deno-lint-ignore no-control-regex
    /\x1b\[[0-9;]*m|[\x00-\x08\x0b-\x1f\x7f-\x9f]/g,
    (m) => m.length > 1 ? m : "?",
  );
}

const CODES = {
  bold: [1, 22],
  dim: [2, 22],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  blue: [34, 39],
  cyan: [36, 39],
} as const;

/** Text in a colour, when colour is on. */
export function paint(io: Io, style: keyof typeof CODES, text: string): string {
  if (!io.color) return text;
  const [on, off] = CODES[style];
  return `\x1b[${on}m${text}\x1b[${off}m`;
}

/** Each state's colour. */
export function stateColor(state: string): keyof typeof CODES {
  switch (state) {
    case "completed":
      return "green";
    case "dead":
      return "red";
    case "active":
      return "cyan";
    case "delayed":
    case "retrying":
      return "yellow";
    case "cancelled":
      return "dim";
    default:
      return "blue";
  }
}

/** Visible width: escape sequences take none. */
function width(text: string): number {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, "").length;
}

/** Rows as aligned columns under a header. */
export function table(io: Io, header: string[], rows: string[][]): string {
  rows = rows.map((row) => row.map((c) => printable(c).replace(/[\n\t]/g, " ")));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => width(r[i] ?? ""))));
  const line = (cells: string[]) =>
    cells.map((c, i) => i === cells.length - 1 ? c : c + " ".repeat(widths[i]! - width(c)))
      .join("  ").trimEnd() + "\n";
  return paint(io, "bold", line(header).trimEnd()) + "\n" + rows.map(line).join("");
}

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/**
 * A duration such as `500ms`, `10s`, `5m`, `2h`, `7d` or `1w`, or plain milliseconds.
 *
 * @throws {UsageError} If the text is none of those.
 */
export function duration(option: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?$/.exec(text.trim());
  if (!match) {
    throw new UsageError(
      `--${option} must be a duration like 500ms, 10s, 5m, 2h or 7d, got ${JSON.stringify(text)}`,
    );
  }
  return Math.round(Number(match[1]) * UNITS[match[2] ?? "ms"]!);
}

/** A whole number option within bounds. */
export function integer(option: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw new UsageError(
      `--${option} must be a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`,
    );
  }
  return n;
}

/** A span of time for people: 850ms, 12s, 4m 10s, 3h 5m, 2d 4h. */
export function span(ms: number): string {
  if (!Number.isFinite(ms)) return "?";
  const abs = Math.abs(ms);
  if (abs < 1_000) return `${Math.round(ms)}ms`;
  if (abs < 60_000) return `${Math.round(ms / 1_000)}s`;
  if (abs < 3_600_000) return `${Math.floor(abs / 60_000)}m ${Math.round(abs % 60_000 / 1_000)}s`;
  if (abs < 86_400_000) {
    return `${Math.floor(abs / 3_600_000)}h ${Math.round(abs % 3_600_000 / 60_000)}m`;
  }
  return `${Math.floor(abs / 86_400_000)}d ${Math.round(abs % 86_400_000 / 3_600_000)}h`;
}

/** An epoch time for people: its ISO form, and how long ago or ahead. */
export function when(at: number | undefined, now = Date.now()): string {
  if (at === undefined) return "";
  if (!Number.isFinite(at)) return "?";
  const d = at - now;
  return `${new Date(at).toISOString()} (${d >= 0 ? `in ${span(d)}` : `${span(-d)} ago`})`;
}

/** A bar of `size` cells, `fraction` full. */
export function bar(fraction: number, size = 30): string {
  const full = Math.max(0, Math.min(size, Math.round(fraction * size)));
  return "█".repeat(full) + "░".repeat(size - full);
}

/**
 * A progress bar on stderr, redrawn in place, for long work on a terminal; nothing elsewhere.
 */
export class Progress {
  #io: Io;
  #label: string;
  #total: number | undefined;
  #start = Date.now();
  #drawn = false;

  /** Starts a bar for `label`; with `total` it shows a fraction and an ETA. */
  constructor(io: Io, label: string, total?: number) {
    this.#io = io;
    this.#label = label;
    this.#total = total;
  }

  /** Shows `done` so far. */
  update(done: number): void {
    if (!this.#io.errTty) return;
    const elapsed = Math.max(1, Date.now() - this.#start);
    const rate = done / elapsed * 1_000;
    let text = `${this.#label} ${done.toLocaleString("en-US")}`;
    if (this.#total !== undefined && this.#total > 0) {
      const fraction = Math.min(1, done / this.#total);
      const eta = rate > 0 ? span((this.#total - done) / rate * 1_000) : "?";
      text = `${this.#label} ${bar(fraction)} ${done.toLocaleString("en-US")}/${
        this.#total.toLocaleString("en-US")
      } ${Math.round(rate)}/s ETA ${eta}`;
    } else {
      text += ` ${Math.round(rate)}/s`;
    }
    this.#io.err(`\r\x1b[2K${text}`);
    this.#drawn = true;
  }

  /** Clears the bar. */
  end(): void {
    if (this.#drawn) this.#io.err("\r\x1b[2K");
  }
}

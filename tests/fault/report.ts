// deno-lint-ignore-file no-console
/**
 * `deno task faults`: runs the fault scenarios in tests/fault/ and prints the reliability
 * table (fault, jobs, lost, duplicated, pass) that the README quotes. The same tests run in
 * CI through `deno task test`; this only collects their rows.
 */
import type { FaultRow } from "./_ledger.ts";

const file = await Deno.makeTempFile({ prefix: "sluice-faults-", suffix: ".jsonl" });
const status = await new Deno.Command(Deno.execPath(), {
  args: ["test", "-A", "--trace-leaks", "tests/fault/"],
  env: { SLUICE_FAULTS_REPORT: file },
  stdout: "inherit",
  stderr: "inherit",
}).spawn().status;
const rows = (await Deno.readTextFile(file)).split("\n").filter(Boolean).map((line) =>
  JSON.parse(line) as FaultRow
);
await Deno.remove(file);
const table = [
  ["scenario", "fault", "jobs", "lost", "duplicated", "pass"],
  ...rows.map((r) => [r.scenario, r.fault, r.jobs, r.lost, r.duplicated, r.pass ? "yes" : "NO"]),
].map((cells) => cells.map(String));
const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
console.log();
console.log(line(table[0]!));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const row of table.slice(1)) console.log(line(row));
Deno.exit(status.success && rows.every((r) => r.pass) ? 0 : 1);

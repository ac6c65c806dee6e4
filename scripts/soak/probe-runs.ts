// N probe runs back to back on a lab that is up: each run's verdicts and seconds, then p50/p95/max;
// exit 0 only when every run passed. `npm run measure:probes -- [LAB] [--runs 20] [--out FILE]`.
import "../quiet-bash.ts";
import path from "node:path";
import { EXIT } from "../../core/exit.ts";
import { probeLab } from "../probes/command.ts";
import { writeOutput } from "../user-file.ts";
import { soakArgs } from "./args.ts";
import { notPassed } from "./repeat.ts";
import { percentile } from "./soak.ts";

async function main(argv: string[]): Promise<number> {
  const args = soakArgs(argv, { runs: "20" }, ["runs"]);
  if (!args) return EXIT.invalid;
  const { runs } = args.numbers;
  const record: { at: string; seconds: number; ok: boolean; notPassed: string[] }[] = [];
  for (let i = 1; i <= runs; i++) {
    const started = Date.now();
    const report = await probeLab(args.lab);
    const run = {
      at: report.startedAt,
      seconds: Math.round((Date.now() - started) / 100) / 10,
      ok: report.ok,
      notPassed: notPassed(report),
    };
    record.push(run);
    console.log(`run ${i}: ${run.ok ? "pass" : run.notPassed.join("; ")} in ${run.seconds} s`);
  }
  const seconds = record.map((r) => r.seconds);
  const summary = { runs, passed: record.filter((r) => r.ok).length, p50: percentile(seconds, 50), p95: percentile(seconds, 95), max: Math.max(...seconds) };
  console.log(`${summary.passed}/${runs} passed; seconds p50 ${summary.p50} p95 ${summary.p95} max ${summary.max}`);
  if (args.out) writeOutput(args.out, `${JSON.stringify({ lab: args.lab.name, summary, runs: record }, null, 2)}\n`, "--out");
  return summary.passed === runs ? EXIT.ok : EXIT.failed;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) process.exitCode = await main(process.argv.slice(2));

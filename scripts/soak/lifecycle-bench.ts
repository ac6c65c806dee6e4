// A lab's life, timed: `down` (a clean start), `up` from nothing, a second `up` with nothing to
// change, `probe`, `down`; each phase's seconds, and each step `up` reports, as JSON.
// `npm run bench:lifecycle -- [LAB] [--out FILE]`; exit 0 only when every phase succeeded.
// `npm run repeat` runs such a life many times over (scripts/soak/repeat.ts).
import "../quiet-bash.ts";
import fs from "node:fs";
import path from "node:path";
import { EXIT } from "../../core/exit.ts";
import { logDir } from "../toolchain/paths.ts";
import { writeOutput } from "../user-file.ts";
import { soakArgs } from "./args.ts";
import { fileStamp, runK8slab, stepSeconds, upChanges } from "./k8slab-run.ts";

interface Phase {
  name: string;
  seconds: number;
  exitCode: number;
  /** `up`'s own steps ("✓ pulumi up: ... (412.3 s)"), by name. */
  steps?: Record<string, number>;
  /** `up`'s summary line: what Pulumi changed. */
  changes?: string;
}

async function main(argv: string[]): Promise<number> {
  const args = soakArgs(argv, {});
  if (!args) return EXIT.invalid;
  const { lab } = args;
  const phases: Phase[] = [];
  const run = async (name: string, ...a: string[]) => {
    const r = await runK8slab([...a, lab.file]);
    const phase: Phase = { name, seconds: r.seconds, exitCode: r.exitCode };
    if (a[0] === "up") {
      phase.steps = stepSeconds(r.stderr);
      phase.changes = upChanges(r.stderr, lab.name);
    }
    phases.push(phase);
    process.stderr.write(`${name}: ${phase.seconds} s, exit ${phase.exitCode}${phase.changes ? `, ${phase.changes}` : ""}\n`);
    return phase;
  };
  await run("down (clean start)", "down");
  (await run("up from nothing", "up")).exitCode === 0 && (await run("second up", "up"));
  await run("probe", "probe");
  await run("down", "down");
  const out = args.out ?? path.join(logDir(), `bench-lifecycle-${lab.name}-${fileStamp()}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  writeOutput(out, `${JSON.stringify({ lab: lab.name, at: new Date().toISOString(), phases }, null, 2)}\n`, "--out");
  process.stderr.write(`record: ${out}\n`);
  return phases.every((p) => p.exitCode === 0) && phases.length === 5 ? EXIT.ok : EXIT.failed;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) process.exitCode = await main(process.argv.slice(2));

// A lab's life, timed: `down` (a clean start), `up` from nothing, a second `up` with nothing to
// change, `probe`, `down`; each phase's seconds, and each step `up` reports, as JSON.
// `npm run bench:lifecycle -- [LAB] [--out FILE]`; exit 0 only when every phase succeeded.
import "../quiet-bash.ts";
import fs from "node:fs";
import path from "node:path";
import { $ } from "zx";
import { EXIT } from "../../core/exit.ts";
import { logDir, repoRoot } from "../toolchain/paths.ts";
import { soakArgs } from "./args.ts";

interface Phase {
  name: string;
  seconds: number;
  exitCode: number;
  /** `up`'s own steps ("✓ pulumi up: ... (412.3 s)"), by name. */
  steps?: Record<string, number>;
  /** `up`'s summary line: what Pulumi changed. */
  changes?: string;
}

/** "✓ name (12.3 s)" lines of a k8slab run, by name. */
export function stepSeconds(stderr: string): Record<string, number> {
  return Object.fromEntries([...stderr.matchAll(/^✓ (.+) \(([\d.]+) s\)$/gm)].map((m) => [m[1], Number(m[2])]));
}

async function main(argv: string[]): Promise<number> {
  const args = soakArgs(argv, {});
  if (!args) return EXIT.invalid;
  const { lab } = args;
  const k8slab = (...a: string[]) =>
    $({ cwd: repoRoot, nothrow: true, quiet: true })`${path.join(repoRoot, "node_modules/.bin/node")} scripts/bin/k8slab.mjs ${a}`;
  const phases: Phase[] = [];
  const run = async (name: string, ...a: string[]) => {
    const started = Date.now();
    const r = await k8slab(...a, lab.file);
    const phase: Phase = { name, seconds: Math.round((Date.now() - started) / 100) / 10, exitCode: r.exitCode ?? 1 };
    if (a[0] === "up") {
      phase.steps = stepSeconds(r.stderr);
      phase.changes = r.stderr.match(new RegExp(`^lab ${lab.name}: (\\{.*\\})$`, "m"))?.[1];
    }
    phases.push(phase);
    process.stderr.write(`${name}: ${phase.seconds} s, exit ${phase.exitCode}${phase.changes ? `, ${phase.changes}` : ""}\n`);
    return phase;
  };
  await run("down (clean start)", "down");
  (await run("up from nothing", "up")).exitCode === 0 && (await run("second up", "up"));
  await run("probe", "probe");
  await run("down", "down");
  const out = args.out ?? path.join(logDir(), `bench-lifecycle-${lab.name}-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify({ lab: lab.name, at: new Date().toISOString(), phases }, null, 2)}\n`);
  process.stderr.write(`record: ${out}\n`);
  return phases.every((p) => p.exitCode === 0) && phases.length === 5 ? EXIT.ok : EXIT.failed;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) process.exitCode = await main(process.argv.slice(2));

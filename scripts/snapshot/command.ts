// `k8slab snapshot [LAB] [-o FILE]` and `k8slab diff BASELINE [CURRENT] [--lab LAB] [--json] [--junit FILE]`.
import yaml from "js-yaml";
import { EXIT } from "../../core/exit.ts";
import type { Lab } from "../../core/index.ts";
import { labOrProblems } from "../lab-file.ts";
import { liveAccess } from "../probes/live.ts";
import { assertOutput, readText, SNAPSHOT_FILE, writeOutput } from "../user-file.ts";
import { canonicalize, SNAPSHOT_TIERS, type Snapshot } from "./canonical.ts";
import { collect } from "./collect.ts";
import { type Change, checkSnapshot, diffSnapshots, SnapshotError } from "./diff.ts";

const say = (line: string) => process.stderr.write(`${line}\n`);

/** The snapshot as a team commits it: YAML, keys in a fixed order, one fact per line. */
export function snapshotYaml(s: Snapshot): string {
  return `# k8slab snapshot of lab ${s.lab}: compare with \`npx k8slab diff FILE\`\n${yaml.dump(s, { lineWidth: -1, noRefs: true })}`;
}

export async function takeSnapshot(lab: Lab): Promise<Snapshot> {
  const access = liveAccess(lab);
  try {
    return canonicalize(lab, await collect(lab, access));
  } finally {
    await access.close();
  }
}

export async function snapshotCommand(labFile: string, out?: string): Promise<number> {
  const lab = labOrProblems(labFile);
  if (!lab) return EXIT.invalid;
  if (out) assertOutput(out, "--output"); // before the snapshot is taken, not after
  const started = Date.now();
  const text = snapshotYaml(await takeSnapshot(lab));
  if (out) {
    writeOutput(out, text, "--output");
    say(`${out}: snapshot of lab ${lab.name}, ${(text.length / 1024).toFixed(0)} KiB, in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } else process.stdout.write(text);
  return EXIT.ok;
}

/** A snapshot file, or SnapshotError naming the argument that gave it: checked before it is opened (a FIFO would block). */
function readSnapshot(file: string, lab: string, label: string): Snapshot {
  const text = readText(file, SNAPSHOT_FILE);
  if (typeof text !== "string") throw new SnapshotError(`${label} ${file}: ${text.reason}`);
  let parsed: unknown;
  try {
    parsed = yaml.load(text, { schema: yaml.CORE_SCHEMA });
  } catch (err) {
    throw new SnapshotError(`${file}: not YAML (${(err as yaml.YAMLException).reason ?? (err as Error).message})`);
  }
  return checkSnapshot(parsed, file, lab);
}

export function renderChanges(changes: Change[], baseline: Snapshot, current: Snapshot, currentName: string): string {
  const head = `k8slab diff: lab ${baseline.lab}, baseline of ${baseline.takenAt} vs ${currentName} (${current.takenAt}): ${changes.length ? `${changes.length} change${changes.length === 1 ? "" : "s"}` : "no change"}`;
  const out = [head];
  for (const tier of SNAPSHOT_TIERS) {
    const here = changes.filter((c) => c.tier === tier);
    if (!here.length) continue;
    out.push("", tier);
    for (const c of here) {
      out.push(`  ${c.key}: ${c.meaning}`);
      for (const l of c.removed) out.push(`    - ${l}`);
      for (const l of c.added) out.push(`    + ${l}`);
    }
  }
  return `${out.join("\n")}\n`;
}

const xml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

export function renderChangesJunit(changes: Change[], lab: string): string {
  const cases = SNAPSHOT_TIERS.map((tier) => {
    const here = changes.filter((c) => c.tier === tier);
    const failures = here
      .map(
        (c) =>
          `      <failure message="${xml(`${c.key}: ${c.meaning}`)}">${xml([...c.removed.map((l) => `- ${l}`), ...c.added.map((l) => `+ ${l}`)].join("\n"))}</failure>`,
      )
      .join("\n");
    return `    <testcase classname="k8slab.diff.${lab}" name="${tier}">${failures ? `\n${failures}\n    ` : ""}</testcase>`;
  });
  const failed = SNAPSHOT_TIERS.filter((t) => changes.some((c) => c.tier === t)).length;
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="k8slab diff" tests="${SNAPSHOT_TIERS.length}" failures="${failed}">\n  <testsuite name="${xml(lab)}" tests="${SNAPSHOT_TIERS.length}" failures="${failed}">\n${cases.join("\n")}\n  </testsuite>\n</testsuites>\n`;
}

export interface DiffOptions {
  lab: string;
  json?: boolean;
  junit?: string;
  /** How the baseline was named, in a refusal: BASELINE, or probe's --baseline. */
  baselineLabel?: string;
}

/** Exit 0 when nothing changed, 1 on drift, 2 when an input is not a snapshot of this lab. */
export async function diffCommand(baselineFile: string, currentFile: string | undefined, opts: DiffOptions): Promise<number> {
  const lab = labOrProblems(opts.lab);
  if (!lab) return EXIT.invalid;
  if (opts.junit) assertOutput(opts.junit, "--junit");
  let baseline: Snapshot;
  let current: Snapshot;
  try {
    baseline = readSnapshot(baselineFile, lab.name, opts.baselineLabel ?? "BASELINE");
    current = currentFile ? readSnapshot(currentFile, lab.name, "CURRENT") : await takeSnapshot(lab);
  } catch (err) {
    if (!(err instanceof SnapshotError)) throw err;
    say(`k8slab diff: ${err.message}`);
    return EXIT.invalid;
  }
  const changes = diffSnapshots(baseline, current);
  process.stdout.write(
    opts.json
      ? `${JSON.stringify({ lab: lab.name, baseline: baseline.takenAt, current: current.takenAt, changes }, null, 2)}\n`
      : renderChanges(changes, baseline, current, currentFile ?? "the live lab"),
  );
  if (opts.junit) writeOutput(opts.junit, renderChangesJunit(changes, lab.name), "--junit");
  return changes.length ? EXIT.failed : EXIT.ok;
}

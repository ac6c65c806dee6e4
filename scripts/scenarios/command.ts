// `k8slab scenarios | break | hint | check | fix`: a workshop's exercises on a lab that is up. What
// was applied is recorded in the lab's state folder, so `fix` works from a new shell and after a
// `break` that failed halfway.
import fs from "node:fs";
import { EXIT } from "../../core/exit.ts";
import type { Lab } from "../../core/index.ts";
import { labPaths } from "../../core/paths.ts";
import { labOrProblems } from "../lab-file.ts";
import { labIsUp } from "../machines/lab.ts";
import { probeLab } from "../probes/command.ts";
import { liveAccess } from "../probes/live.ts";
import { renderTerminal } from "../probes/render.ts";
import type { LabAccess, ProbeReport } from "../probes/types.ts";
import { readOptionalText, STATE_FILE, writeOutput } from "../user-file.ts";
import { doesNotFit, forLab, loadCatalog } from "./catalog.ts";
import type { Scenario, ScenarioStep } from "./schema.ts";

const say = (line: string) => process.stderr.write(`${line}\n`);
/** A step's limit: longer than the longest wait a scenario's own kubectl asks for (--timeout=300s). */
const STEP_SEC = 330;

interface Applied {
  id: string;
  hidden: boolean;
  appliedAt: string;
  hintsShown: number;
  solved?: boolean;
}

const readApplied = (lab: Lab): Applied | undefined => {
  // What is not a regular file there is refused (FileRefused), not taken for "no scenario".
  const text = readOptionalText(labPaths(lab.name).scenario, STATE_FILE);
  try {
    return text === undefined ? undefined : (JSON.parse(text) as Applied);
  } catch {
    return undefined;
  }
};
const writeApplied = (lab: Lab, a: Applied) => writeOutput(labPaths(lab.name).scenario, `${JSON.stringify(a, null, 2)}\n`);

/** The catalog with every text and step written for this lab. */
function catalogOr(lab: Lab): Scenario[] | undefined {
  const { scenarios, problems } = loadCatalog(lab);
  for (const p of problems) say(`${p.file}: ${p.path}: ${p.reason}`);
  return problems.length ? undefined : scenarios.map((s) => forLab(s, lab));
}

/** Runs steps in order; returns a line per step that failed (all run: an undo must go as far as it can). */
export async function runSteps(lab: Lab, access: LabAccess, steps: ScenarioStep[], what: string): Promise<string[]> {
  const failures: string[] = [];
  for (const [i, step] of steps.entries()) {
    const exec =
      "run" in step
        ? await access.onNode(lab.nodes[step.node].name, step.run, STEP_SEC)
        : "kubectl" in step
          ? await access.kubectl(step.kubectl, STEP_SEC)
          : await access.fromOutsideClient(step.client, STEP_SEC);
    if (exec.exitCode !== 0)
      failures.push(`${what}[${i}] on ${exec.where}: exit ${exec.exitCode}: ${(exec.stderr || exec.stdout).trim().split("\n").pop() ?? ""}`);
  }
  return failures;
}

const pause = (sec: number) => new Promise((r) => setTimeout(r, sec * 1000));

export function listCommand(labFile: string, json: boolean): number {
  const lab = labOrProblems(labFile);
  if (!lab) return EXIT.invalid;
  const scenarios = catalogOr(lab);
  if (!scenarios) return EXIT.invalid;
  if (json) {
    process.stdout.write(
      `${JSON.stringify(
        scenarios.map((s) => ({ id: s.id, title: s.title, level: s.level, tier: s.verdict.tier, story: s.story })),
        null,
        2,
      )}\n`,
    );
    return EXIT.ok;
  }
  const w = Math.max(...scenarios.map((s) => s.id.length));
  for (const s of scenarios) process.stdout.write(`${s.id.padEnd(w)}  ${s.level.padEnd(12)}  ${s.verdict.tier.padEnd(14)}  ${s.title}\n`);
  return EXIT.ok;
}

export async function breakCommand(labFile: string, id: string | undefined, opts: { random?: boolean; hidden?: boolean }): Promise<number> {
  const lab = labOrProblems(labFile);
  if (!lab) return EXIT.invalid;
  const scenarios = catalogOr(lab);
  if (!scenarios) return EXIT.invalid;
  const applied = readApplied(lab);
  if (applied) {
    say(`k8slab break: lab ${lab.name} already has a scenario applied${applied.hidden ? "" : ` (${applied.id})`}: \`npx k8slab fix ${labFile}\` first`);
    return EXIT.invalid;
  }
  const fits = scenarios.filter((s) => !doesNotFit(s, lab));
  const scenario = opts.random ? fits[Math.floor(Math.random() * fits.length)] : scenarios.find((s) => s.id === id);
  if (!scenario) {
    say(`k8slab break: ${id ? `no scenario "${id}"` : "name a scenario or use --random"}; \`npx k8slab scenarios\` lists them`);
    return EXIT.invalid;
  }
  if (!fits.includes(scenario)) {
    say(`k8slab break: ${scenario.id} ${doesNotFit(scenario, lab)}`);
    return EXIT.invalid;
  }
  if (!(await labIsUp(lab))) {
    say(`k8slab break: lab ${lab.name} is not up: \`npx k8slab up ${labFile}\` first`);
    return EXIT.invalid;
  }
  // Recorded before anything changes: a break that fails halfway is still undone by `fix`.
  writeApplied(lab, { id: scenario.id, hidden: !!opts.hidden, appliedAt: new Date().toISOString(), hintsShown: 0 });
  const access = liveAccess(lab);
  try {
    const failures = await runSteps(lab, access, scenario.apply, "apply");
    if (failures.length) {
      for (const f of failures) say(`  ${f}`);
      say(`k8slab break: applying the scenario failed; the lab may be half broken: \`npx k8slab fix ${labFile}\` undoes it`);
      return EXIT.failed;
    }
  } finally {
    await access.close();
  }
  await pause(scenario.settleSec);
  process.stdout.write(
    `${opts.hidden ? "A scenario is applied" : `Scenario ${scenario.id}: ${scenario.title}`} (lab ${lab.name}).\n\n${scenario.story.trim()}\n\n`,
  );
  process.stdout.write(`\`npx k8slab check\` runs the probes; \`npx k8slab hint\` gives a hint; \`npx k8slab fix\` undoes it.\n`);
  return EXIT.ok;
}

function appliedOr(lab: Lab, labFile: string, scenarios: Scenario[]): { applied: Applied; scenario: Scenario } | undefined {
  const applied = readApplied(lab);
  const scenario = applied && scenarios.find((s) => s.id === applied.id);
  if (!applied || !scenario) {
    say(`lab ${lab.name} has no scenario applied: \`npx k8slab break ${labFile} ID\` applies one`);
    return undefined;
  }
  return { applied, scenario };
}

export function hintCommand(labFile: string): number {
  const lab = labOrProblems(labFile);
  const scenarios = lab && catalogOr(lab);
  if (!lab || !scenarios) return EXIT.invalid;
  const found = appliedOr(lab, labFile, scenarios);
  if (!found) return EXIT.invalid;
  const { applied, scenario } = found;
  if (applied.hintsShown >= scenario.hints.length) {
    process.stdout.write(`No more hints (${scenario.hints.length} given). The probes name the broken hop: \`npx k8slab check\`.\n`);
    return EXIT.ok;
  }
  process.stdout.write(`Hint ${applied.hintsShown + 1} of ${scenario.hints.length}: ${scenario.hints[applied.hintsShown]}\n`);
  writeApplied(lab, { ...applied, hintsShown: applied.hintsShown + 1 });
  return EXIT.ok;
}

export async function checkCommand(labFile: string): Promise<number> {
  const lab = labOrProblems(labFile);
  const scenarios = lab && catalogOr(lab);
  if (!lab || !scenarios) return EXIT.invalid;
  const found = appliedOr(lab, labFile, scenarios);
  const report = await probeLab(lab);
  process.stdout.write(renderTerminal(report, { color: process.stdout.isTTY }));
  if (!found) return report.ok ? EXIT.ok : EXIT.failed;
  if (!report.ok) {
    process.stdout.write("\nNot healed yet: start at the lowest tier that does not pass.\n");
    return EXIT.failed;
  }
  writeApplied(lab, { ...found.applied, solved: true });
  process.stdout.write(`\nHealed: every tier passes. It was ${found.scenario.id}: ${found.scenario.title}.\n\n${found.scenario.explanation.trim()}\n`);
  return EXIT.ok;
}

/** Undoes what was applied (idempotent), then waits for every tier to pass. */
export async function fixCommand(labFile: string, opts: { waitSec?: number } = {}): Promise<number> {
  const lab = labOrProblems(labFile);
  const scenarios = lab && catalogOr(lab);
  if (!lab || !scenarios) return EXIT.invalid;
  const applied = readApplied(lab);
  const scenario = applied && scenarios.find((s) => s.id === applied.id);
  if (applied && !scenario) say(`k8slab fix: the applied scenario "${applied.id}" is no longer in the catalog; only the probes run`);
  if (scenario) {
    const access = liveAccess(lab);
    try {
      for (const f of await runSteps(lab, access, scenario.undo, "undo")) say(`  ${f}`);
    } finally {
      await access.close();
    }
  }
  // The lab heals at its own pace (a DaemonSet rolling back, kube-proxy's next sync): probe until green.
  const deadline = Date.now() + ((scenario?.settleSec ?? 0) + (opts.waitSec ?? 240)) * 1000;
  let report: ProbeReport;
  for (;;) {
    report = await probeLab(lab);
    if (report.ok || Date.now() > deadline) break;
    await pause(15);
  }
  process.stdout.write(renderTerminal(report, { color: process.stdout.isTTY }));
  if (!report.ok) {
    say(
      `k8slab fix: ${scenario ? `${scenario.id} undone, but ` : ""}not every tier passes: see the report. \`npx k8slab up ${labFile}\` puts back the cluster's objects; a change made on a node by hand (a route, a rule, a sysctl) needs undoing there, or the node restarted`,
    );
    return EXIT.failed;
  }
  fs.rmSync(labPaths(lab.name).scenario, { force: true });
  return EXIT.ok;
}

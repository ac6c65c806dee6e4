// What the end-to-end tests share about the reference lab: its file and Lab, the k8slab command as a
// user runs it, whether the lab is up, a command on one of its nodes, and a catalog scenario tried on it.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { $ } from "zx";
import { loadLab } from "../../scripts/lab-file.ts";
import { labRunning, labStatus } from "../../scripts/machines/lab.ts";
import type { SshEndpoint } from "../../scripts/machines/spec.ts";
import { sshRun } from "../../scripts/machines/ssh.ts";
import type { ProbeReport } from "../../scripts/probes/types.ts";
import type { Scenario } from "../../scripts/scenarios/schema.ts";
import { cacheRoot, repoRoot } from "../../scripts/toolchain/paths.ts";

export const LAB_FILE = "labs/two-node.yaml";
const loaded = loadLab(path.join(repoRoot, LAB_FILE));
assert.ok(loaded.ok);
export const lab = loaded.lab;

/** The k8slab command after npm ci: the project's own Node, the bin script; never throws. */
export const k8slab = (...args: string[]) =>
  $({ cwd: repoRoot, nothrow: true, quiet: true })`${path.join(repoRoot, "node_modules/.bin/node")} scripts/bin/k8slab.mjs ${args}`;

/**
 * Why a k8slab run failed, for an assertion message: its error lines and its tail. Pulumi prints a
 * resource's error far above the summary, so the whole output is kept in a log file named there.
 */
/** Asserts a run exited 0; when it did not, its whole output goes to a log file and its errors and last lines to the failure. */
export function assertExited0(run: { exitCode: number | null }, what: string, output: string): void {
  if (run.exitCode !== 0) assert.fail(`exit ${run.exitCode}: ${failureOf(what, output)}`);
}

function failureOf(what: string, output: string): string {
  const file = path.join(cacheRoot(), "logs", `e2e-${what.replace(/\W+/g, "-")}-${Date.now()}.log`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, output);
  const lines = output.split("\n");
  const errors = lines.filter((l) => /error|✗/i.test(l)).slice(0, 15);
  return `${what} failed (whole output: ${file})\n${errors.join("\n")}\n...\n${lines.slice(-25).join("\n")}`;
}

export const secsSince = (from: number) => Math.round((Date.now() - from) / 100) / 10;

/** The lab's namespace exists and every VM runs. */
export const labIsUp = () =>
  labRunning(
    lab.name,
    lab.netns,
    lab.nodes.map((n) => n.name),
  );

/** A command on a node over ssh: its output and exit status (ssh itself must succeed). */
export async function onNode(name: string, command: string): Promise<{ out: string; rc: number }> {
  const vm = (await labStatus(lab.name)).nodes.find((n) => n.name === name);
  assert.ok(vm?.ssh, `${name} has an ssh endpoint`);
  const out = await sshRun(vm.ssh as SshEndpoint, `${command}; echo "rc=$?"`);
  const m = /rc=(\d+)\n?$/.exec(out);
  return { out: out.slice(0, m?.index), rc: Number(m?.[1]) };
}

/** The first broken hop's name (firstBrokenHop is "name: detail"; a name may hold a colon, as node1:30080 does). */
const hopName = (r: ProbeReport["results"][number]) => r.hops.find((h) => !h.ok)?.name ?? r.firstBrokenHop ?? "-";

export const SCENARIO_TABLE_HEAD =
  "| scenario | expected tier | tier reported | hop named | apply s | diagnose s | undo s |\n| --- | --- | --- | --- | --- | --- | --- |";

/**
 * One catalog scenario on the reference lab: `break`, `probe --json`, `fix`. Returns its table row,
 * whether `fix` healed the lab, and `check`, which asserts the verdict (run after the row is kept, so
 * a failing scenario still shows in the table).
 */
export async function tryScenario(s: Scenario): Promise<{ row: string; healed: boolean; check: () => void }> {
  let t = Date.now();
  const broke = await k8slab("break", LAB_FILE, s.id);
  const apply = secsSince(t);
  t = Date.now();
  const probe = await k8slab("probe", LAB_FILE, "--json");
  const diagnose = secsSince(t);
  let report: ProbeReport | undefined;
  try {
    report = JSON.parse(probe.stdout) as ProbeReport;
  } catch {
    report = undefined;
  }
  const failing = report?.results.find((r) => r.verdict === "fail" || r.verdict === "inconclusive");
  t = Date.now();
  const fixed = await k8slab("fix", LAB_FILE);
  const undo = secsSince(t);
  return {
    row: `| ${s.id} | ${s.verdict.tier} | ${failing?.tier ?? "none"} | ${failing?.firstBrokenHop ? hopName(failing) : "-"} | ${apply} | ${diagnose} | ${undo} |`,
    healed: fixed.exitCode === 0,
    check: () => {
      assert.equal(broke.exitCode, 0, broke.stderr);
      assert.equal(probe.exitCode, 1, "the probes find the fault");
      assert.equal(failing?.tier, s.verdict.tier, `failing tier (first broken hop: ${failing?.firstBrokenHop})`);
      assert.match(failing?.firstBrokenHop ?? "", new RegExp(s.verdict.hop));
      assert.equal(fixed.exitCode, 0, `fix: ${fixed.stderr.split("\n").slice(-5).join("\n")}`);
    },
  };
}

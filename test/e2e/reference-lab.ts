// What the end-to-end tests share: the reference lab under the tests' own name (own-lab.ts) and its Lab,
// the k8slab command as a user runs it (each run in a process group the test owns), whether the lab is
// up, a command on one of its nodes, and a catalog scenario tried on it.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { before } from "node:test";
import { labRunning, labStatus } from "../../scripts/machines/lab.ts";
import type { SshEndpoint } from "../../scripts/machines/spec.ts";
import { sshRun } from "../../scripts/machines/ssh.ts";
import type { ProbeReport } from "../../scripts/probes/types.ts";
import type { Scenario } from "../../scripts/scenarios/schema.ts";
import { cacheRoot, repoRoot } from "../../scripts/toolchain/paths.ts";
import { atAbnormalEnd, spawnOwned, stopOwned, stopWhenTestEnds } from "../owned.ts";
import { notOwnTarget, ownLab } from "./own-lab.ts";

/** The reference lab (labs/two-node.yaml) as the tests' own: e2e-two-node, its file written beside k8slab's state. */
const reference = ownLab("labs/two-node.yaml");
export const LAB_FILE = reference.file;
export const lab = reference.lab;

const NODE = path.join(repoRoot, "node_modules/.bin/node");
/** The bin script; K8SLAB_E2E_BIN puts a stand-in there, for a dry run of the harness itself (no lab). */
export const K8SLAB = process.env.K8SLAB_E2E_BIN ?? "scripts/bin/k8slab.mjs";
/**
 * How a k8slab run is owned: SIGTERM to it alone (inside Pulumi's step it asks Pulumi to stop, state
 * whole), a minute for that, then SIGKILL to its group; SIGTERM from the kernel if this process dies.
 */
export const K8SLAB_RUN = { deathSignal: "TERM", firstSignalTo: "leader", graceMs: 60_000 } as const;

export interface K8slabRun {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The k8slab command after npm ci (the project's own Node, the bin script); never throws. Each run is a
 * process group this test owns (test/owned.ts): stopped with its test when the test times out or fails,
 * SIGTERM from the kernel if this process dies. `down` only ever of a lab (or room) of the tests' own
 * names, after stopping this process's runs still going (they hold the lab's lock), and again while a
 * stopped run's lock has not yet gone stale.
 */
export async function k8slab(...args: string[]): Promise<K8slabRun> {
  if (args[0] !== "down") return runK8slab(args);
  assertOwnTarget(args.slice(1));
  await stopOwned("SIGTERM");
  const deadline = Date.now() + 90_000;
  for (;;) {
    const run = await runK8slab(args);
    if (run.exitCode !== 2 || !/being changed right now/.test(run.stderr) || Date.now() > deadline) return run;
    await new Promise((r) => setTimeout(r, 5000));
  }
}

function runK8slab(args: string[]): Promise<K8slabRun> {
  const run = spawnOwned(NODE, [K8SLAB, ...args], { cwd: repoRoot, ...K8SLAB_RUN, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  run.child.stdout!.on("data", (d) => (stdout += d));
  run.child.stderr!.on("data", (d) => (stderr += d));
  // "close": every byte of both pipes read, not only the process gone.
  return new Promise((resolve) => run.child.once("close", (exitCode) => resolve({ exitCode, stdout, stderr })));
}

/** A `down` is of a lab or room of the tests' own names, or it does not run. */
function assertOwnTarget(args: string[]): void {
  const problem = notOwnTarget(args);
  assert.ok(!problem, problem);
}

/**
 * In a suite: what each test started is stopped when the test ends (a timeout included), and if this
 * process is stopped or loses its test runner (no `after` then), the runs are stopped and each target
 * taken down (`k8slab down <target...>`: an own lab file, or --room and an own room file) unless
 * K8SLAB_E2E_KEEP=1. Call it once, first thing in the suite.
 */
export function ownRunsAndLabs(...targets: string[][]): void {
  for (const t of targets) assertOwnTarget(t);
  stopWhenTestEnds("SIGTERM");
  if (process.env.K8SLAB_E2E_KEEP === "1") return;
  atAbnormalEnd(() => {
    for (const t of targets) {
      const log = path.join(cacheRoot(), "logs", `e2e-abnormal-end-down-${Date.now()}.log`);
      fs.mkdirSync(path.dirname(log), { recursive: true });
      // Synchronous: no `after` hook runs now, and this process ends right after.
      for (let i = 0; i < 20; i++) {
        const down = spawnSync(NODE, [K8SLAB, "down", ...t], { cwd: repoRoot, encoding: "utf8", timeout: 15 * 60_000 });
        fs.appendFileSync(log, `$ k8slab down ${t.join(" ")}: exit ${down.status}\n${down.stderr}\n`);
        if (down.status !== 2 || !/being changed right now/.test(down.stderr)) break;
        spawnSync("sleep", ["5"]);
      }
    }
  });
}

/** Asserts a run exited 0; when it did not, its whole output goes to a log file and its errors and last lines to the failure. */
export function assertExited0(run: { exitCode: number | null }, what: string, output: string): void {
  if (run.exitCode !== 0) assert.fail(`exit ${run.exitCode}: ${failureOf(what, output)}`);
}

/**
 * In a suite: the tests' own reference lab, owned (ownRunsAndLabs), used when it is up and else
 * brought up before the suite. `downIfBroughtUp`, in the suite's `after`, takes down only a lab the
 * suite brought up (also when that `up` failed halfway), and none with K8SLAB_E2E_KEEP=1.
 */
export function referenceLabForSuite(): { downIfBroughtUp: () => Promise<void> } {
  ownRunsAndLabs([LAB_FILE]);
  let broughtUp = false;
  before(async () => {
    if (await labIsUp()) return;
    broughtUp = true;
    const up = await k8slab("up", LAB_FILE);
    assertExited0(up, "up", `${up.stderr}\n${up.stdout}`);
  });
  return {
    async downIfBroughtUp() {
      if (!broughtUp || process.env.K8SLAB_E2E_KEEP === "1") return;
      const down = await k8slab("down", LAB_FILE);
      assertExited0(down, "down", down.stderr);
    },
  };
}

/**
 * Why a k8slab run failed, for an assertion message: its error lines and its tail. Pulumi prints a
 * resource's error far above the summary, so the whole output is kept in a log file named there.
 */
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
      // The whole report is kept when the hop is not the scenario's: its evidence says why.
      if (!new RegExp(s.verdict.hop).test(failing?.firstBrokenHop ?? ""))
        assert.fail(`first broken hop "${failing?.firstBrokenHop}" is not /${s.verdict.hop}/: ${failureOf(`scenario-${s.id}-probe`, probe.stdout)}`);
      assert.equal(fixed.exitCode, 0, `fix: ${fixed.stderr.split("\n").slice(-5).join("\n")}`);
    },
  };
}

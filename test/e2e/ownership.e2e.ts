// Tests own what they touch, shown on a live container lab (root, LXC). An e2e suite of its own (written
// here, run as its own test run) starts `k8slab up` of its own lab; then (1) the test times out: the up's
// whole process group is ended as it times out and the suite's `after` takes the lab down; (2) its test
// runner is SIGKILLed mid-up: the suite's process ends the up's group and takes the lab down by itself.
// Either way no process of the up's group is left, the lab's lock is free, nothing of the lab is left, and
// every other lab on the host (any not of the tests' own names: a developer's) is as it was, its nodes
// the same processes.
// Run: npm run test:e2e:ownership   (K8SLAB_E2E_OWNERSHIP_CUT_SEC: how far into the up it is cut, 45 by default)
import "../../scripts/quiet-bash.ts";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { labPaths, runRoot, stateRoot } from "../../core/paths.ts";
import { labStatus } from "../../scripts/machines/lab.ts";
import { netnsExists } from "../../scripts/machines/labnet.ts";
import { repoRoot } from "../../scripts/toolchain/paths.ts";
import { isOwnName, ownLab } from "./own-lab.ts";
import { assertExited0, K8SLAB, k8slab, ownRunsAndLabs } from "./reference-lab.ts";

const TEMPLATE = "labs/container-two-node.yaml";
const { file: LAB_FILE, lab } = ownLab(TEMPLATE);
const CUT_SEC = Number(process.env.K8SLAB_E2E_OWNERSHIP_CUT_SEC ?? 45);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-ownership-e2e-"));

/** /proc/PID/stat's state, parent and group, or undefined once it is gone. */
function procStat(pid: number): { state: string; ppid: number; pgid: number } | undefined {
  try {
    const [state, ppid, pgid] = fs
      .readFileSync(`/proc/${pid}/stat`, "utf8")
      .replace(/^.*\) /, "")
      .split(" ");
    return { state, ppid: Number(ppid), pgid: Number(pgid) };
  } catch {
    return undefined;
  }
}
const pids = () =>
  fs
    .readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
/** The live processes in process group pgid, with their command lines. */
const groupMembers = (pgid: number) =>
  pids()
    .filter((p) => {
      const s = procStat(p);
      return s && s.pgid === pgid && s.state !== "Z";
    })
    .map((p) => `${p} ${fs.readFileSync(`/proc/${p}/cmdline`, "utf8").replaceAll("\0", " ").slice(0, 120)}`);
/** The k8slab up of our lab file that a process (the suite's test-file process) started. */
const upStartedBy = (parent: number) =>
  pids().find((p) => {
    try {
      const cmd = fs.readFileSync(`/proc/${p}/cmdline`, "utf8");
      return procStat(p)?.ppid === parent && cmd.includes(`${K8SLAB}\0up\0${LAB_FILE}`);
    } catch {
      return false;
    }
  });

/** Every lab on this host not of the tests' own names, with its nodes (name, running, pid). */
async function otherLabs(): Promise<Record<string, string[]>> {
  const dir = path.join(stateRoot(), "labs");
  const names = fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => !isOwnName(n)) : [];
  const labs: Record<string, string[]> = {};
  for (const name of names) labs[name] = (await labStatus(name)).nodes.map((n) => `${n.name} running=${n.running} pid=${n.pid ?? "-"}`);
  return labs;
}

/**
 * The suite under test: the e2e helpers as every e2e file uses them (ownRunsAndLabs, k8slab, `down`
 * in its `after`), one test that runs `up` with a timeout of timeoutSec. Prints its process's pid.
 */
const suite = (timeoutSec: number) => `
import { after, describe, it } from "node:test";
import { ownLab } from ${JSON.stringify(path.join(import.meta.dirname, "own-lab.ts"))};
import { k8slab, ownRunsAndLabs } from ${JSON.stringify(path.join(import.meta.dirname, "reference-lab.ts"))};
const { file } = ownLab(${JSON.stringify(TEMPLATE)});
console.log("suite process " + process.pid);
describe("an e2e suite", () => {
  ownRunsAndLabs([file]);
  after(async () => { await k8slab("down", file); });
  it("up", { timeout: ${timeoutSec * 1000} }, async () => { await k8slab("up", file); });
});
`;

/** Runs the suite as a test run of its own (node --test through tsx), with what it printed. */
function runSuite(name: string, timeoutSec: number) {
  const file = path.join(tmp, `${name}.test.mts`);
  fs.writeFileSync(file, suite(timeoutSec));
  // Its own run, not a subtest of this one.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const run = spawn(process.execPath, ["--import", "tsx", "--test", "--test-reporter=tap", file], { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  run.stdout.on("data", (d) => (out += d));
  run.stderr.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => run.once("exit", resolve));
  return { run, exited, out: () => out };
}

/** The suite's process and its up, once both run. */
async function suiteAndUp(out: () => string): Promise<{ suite: number; up: number }> {
  for (const end = Date.now() + 120_000; Date.now() < end; await sleep(200)) {
    const suite = Number(/suite process (\d+)/.exec(out())?.[1]);
    const up = suite ? upStartedBy(suite) : undefined;
    if (up) return { suite, up };
  }
  assert.fail(`the suite's up did not start:\n${out()}`);
}

/** What must hold once a cut-short up is over: its group gone, the lock free, nothing of the lab left, other labs as they were. */
async function nothingLeft(up: number, others: Record<string, string[]>, seconds: number) {
  const from = Date.now();
  while ((groupMembers(up).length || netnsExists(lab.netns) || fs.existsSync(labPaths(lab.name).dir)) && Date.now() - from < seconds * 1000) await sleep(500);
  assert.deepEqual(groupMembers(up), [], "no process of the up's group is left");
  assert.equal(fs.existsSync(path.join(runRoot(), `${lab.name}.lifecycle.holder`)), false, "the lab's lock is free");
  assert.equal(netnsExists(lab.netns), false, "the lab's namespace is gone");
  assert.equal(fs.existsSync(labPaths(lab.name).dir), false, "the lab's state is gone");
  assert.deepEqual(await otherLabs(), others, "the other labs on the host are as they were");
}

describe("tests own what they touch, on a live container lab", { skip: process.getuid?.() === 0 ? false : "needs root (namespaces, LXC)" }, () => {
  ownRunsAndLabs([LAB_FILE]);
  let others: Record<string, string[]> = {};

  before(async () => {
    others = await otherLabs();
    process.stderr.write(`other labs on this host, to be left as they are: ${JSON.stringify(others)}\n`);
    const down = await k8slab("down", LAB_FILE);
    assertExited0(down, "down", down.stderr);
  });

  after(async () => {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (process.env.K8SLAB_E2E_KEEP !== "1") await k8slab("down", LAB_FILE);
  });

  it(`a test that times out ${CUT_SEC} s into its up: the up's group ended at the timeout, the lab taken down by the suite's after`, {
    timeout: 15 * 60_000,
  }, async () => {
    const s = runSuite("timeout", CUT_SEC);
    const { up } = await suiteAndUp(s.out);
    assert.equal(procStat(up)?.pgid, up, "the up leads a process group of its own");
    await s.exited;
    assert.match(s.out(), /test timed out after/, `the suite's test timed out:\n${s.out().slice(-3000)}`);
    await nothingLeft(up, others, 60);
  });

  it(`its test runner SIGKILLed ${CUT_SEC} s into the up: the suite's process ends the up's group and takes the lab down itself`, {
    timeout: 15 * 60_000,
  }, async () => {
    const s = runSuite("runner-killed", 30 * 60);
    const { suite, up } = await suiteAndUp(s.out);
    await sleep(CUT_SEC * 1000);
    assert.ok(procStat(up), `the up ended by itself before ${CUT_SEC} s: set K8SLAB_E2E_OWNERSHIP_CUT_SEC lower`);
    assert.equal(procStat(suite)?.ppid, s.run.pid, "the suite's process is the runner's (node --test) child");
    process.kill(s.run.pid!, "SIGKILL"); // the test runner this test started
    await s.exited;
    // The suite's process stops the up (a minute at most), then runs `down` itself.
    for (const end = Date.now() + 5 * 60_000; procStat(suite) && procStat(suite)?.state !== "Z" && Date.now() < end; ) await sleep(500);
    await nothingLeft(up, others, 60);
  });
});

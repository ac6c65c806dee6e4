// What the end-to-end tests share about the reference lab: its file and Lab, the k8slab command as a
// user runs it, whether the lab is up, and a command on one of its nodes.
import assert from "node:assert/strict";
import path from "node:path";
import { $ } from "zx";
import { loadLab } from "../../scripts/lab-file.ts";
import { labRunning, labStatus } from "../../scripts/machines/lab.ts";
import type { SshEndpoint } from "../../scripts/machines/spec.ts";
import { sshRun } from "../../scripts/machines/ssh.ts";
import { repoRoot } from "../../scripts/toolchain/paths.ts";

export const LAB_FILE = "labs/two-node.yaml";
const loaded = loadLab(path.join(repoRoot, LAB_FILE));
assert.ok(loaded.ok);
export const lab = loaded.lab;

/** The k8slab command after npm ci: the project's own Node, the bin script; never throws. */
export const k8slab = (...args: string[]) =>
  $({ cwd: repoRoot, nothrow: true, quiet: true })`${path.join(repoRoot, "node_modules/.bin/node")} scripts/bin/k8slab.mjs ${args}`;

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

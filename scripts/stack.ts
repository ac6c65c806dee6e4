// Drives a lab's Pulumi stack (one stack per lab, named after it) through the Automation API, offline.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { LocalWorkspace, PulumiCommand, type Stack } from "@pulumi/pulumi/automation/index.js";
import type { Lab } from "../infra/lab/index.js";
import { pulumiBinDir, pulumiEnv, repoRoot } from "./toolchain/paths.js";

/** Selects (or creates) the lab's stack with the bundled pulumi and points its config at the lab file. */
export async function openStack(lab: Lab): Promise<Stack> {
  const stack = await LocalWorkspace.createOrSelectStack({ stackName: lab.name, workDir: repoRoot }, await workspaceOptions());
  await stack.setConfig("k8slab:lab", { value: path.relative(repoRoot, lab.file) });
  return stack;
}

async function workspaceOptions() {
  // The file backend refuses a folder that does not exist yet (first `up` on a machine).
  const backend = pulumiEnv().PULUMI_BACKEND_URL ?? process.env.PULUMI_BACKEND_URL ?? "";
  if (backend.startsWith("file://")) await mkdir(backend.slice("file://".length), { recursive: true });
  const pulumiCommand = await PulumiCommand.get({ root: path.dirname(pulumiBinDir()), skipVersionCheck: true });
  return { envVars: pulumiEnv(), pulumiCommand };
}

/** True when the lab's stack exists in the local state. */
export async function stackExists(lab: Lab): Promise<boolean> {
  const workspace = await LocalWorkspace.create({ workDir: repoRoot, ...(await workspaceOptions()) });
  return (await workspace.listStacks()).some((s) => s.name === lab.name);
}

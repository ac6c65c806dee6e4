// Drives a lab's Pulumi stack (one stack per lab, named after it) through the Automation API, offline.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { LocalWorkspace, PulumiCommand, type Stack } from "@pulumi/pulumi/automation/index.js";
import yaml from "js-yaml";
import type { Lab } from "../core/index.ts";
import { labPaths } from "../core/paths.ts";
import { processAlive } from "./toolchain/bundle.ts";
import { pulumiBinDir, pulumiEnv, repoRoot } from "./toolchain/paths.ts";

/** Selects (or creates) the lab's stack with the bundled pulumi and points its config at the lab file. */
export async function openStack(lab: Lab, say: (line: string) => void = () => {}): Promise<Stack> {
  const backend = fileBackend();
  if (backend) for (const lock of await clearStaleLocks(backend, lab.name)) say(`  removed the stack lock of ${lock} (that pulumi no longer runs)`);
  const options = await workspaceOptions();
  const existed = await stackExists(lab);
  // A stack's settings file outlives its stack when another checkout ran `down`; its encryption salt
  // belongs to the old passphrase and would make the new stack's secrets unreadable.
  if (!existed) await rm(path.join(repoRoot, `Pulumi.${lab.name}.yaml`), { force: true });
  options.envVars = { ...options.envVars, ...(await secretsPassphrase(lab, existed, say)) };
  const stack = await LocalWorkspace.createOrSelectStack({ stackName: lab.name, workDir: repoRoot }, options);
  const labFile = path.relative(repoRoot, lab.file);
  if ((await stackSettings(lab.name)).config?.[LAB_CONFIG_KEY] !== labFile) await stack.setConfig(LAB_CONFIG_KEY, { value: labFile });
  return stack;
}

/** The stack config key naming the lab file a stack stands up (Pulumi.yaml declares it). */
const LAB_CONFIG_KEY = "k8slab:lab";

/** The stack's settings file (Pulumi.<stack>.yaml beside Pulumi.yaml), or nothing when there is none. */
async function stackSettings(stackName: string): Promise<{ config?: Record<string, unknown> }> {
  const text = await readFile(path.join(repoRoot, `Pulumi.${stackName}.yaml`), "utf8").catch(() => "");
  return (yaml.load(text) as { config?: Record<string, unknown> } | undefined) ?? {};
}

/** What a lab's stack was encrypted with before each lab had its own passphrase. */
const LEGACY_PASSPHRASE = "k8slab";

/**
 * The passphrase Pulumi encrypts a lab's secrets (CA key, every key, kubeconfigs) with: yours when
 * PULUMI_CONFIG_PASSPHRASE(_FILE) is set; else a random one in the lab's 0600 file, made with its
 * stack; a stack made before that keeps the old fixed one until `down`.
 */
export async function secretsPassphrase(lab: Lab, stackExisted: boolean, say: (line: string) => void): Promise<Record<string, string>> {
  if (process.env.PULUMI_CONFIG_PASSPHRASE !== undefined || process.env.PULUMI_CONFIG_PASSPHRASE_FILE) return {};
  const file = labPaths(lab.name).secretsPassphrase;
  if (!existsSync(file)) {
    if (stackExisted) {
      say(`  ${lab.name}'s Pulumi secrets use the old fixed passphrase; \`k8slab down\` and \`up\` give it a random one`);
      return { PULUMI_CONFIG_PASSPHRASE: LEGACY_PASSPHRASE };
    }
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    await writeFile(file, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600, flag: "wx" });
  }
  return { PULUMI_CONFIG_PASSPHRASE_FILE: file };
}

/** The folder of a file backend (the default), or undefined for any other backend. */
function fileBackend(): string | undefined {
  const url = pulumiEnv().PULUMI_BACKEND_URL ?? process.env.PULUMI_BACKEND_URL ?? "";
  return url.startsWith("file://") ? url.slice("file://".length) : undefined;
}

/**
 * Removes the file backend's locks on this stack left by a pulumi that was killed (an interrupted
 * `up`): each names its pulumi's pid and host, and one whose process is gone from this host would
 * make every later `up` and `down` fail with "the stack is currently locked". Returns what it removed.
 */
export async function clearStaleLocks(backendDir: string, stackName: string, isRunning = processAlive): Promise<string[]> {
  const project = (yaml.load(await readFile(path.join(repoRoot, "Pulumi.yaml"), "utf8")) as { name: string }).name;
  const dir = path.join(backendDir, ".pulumi", "locks", "organization", project, stackName);
  const files = await readdir(dir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const file of files.filter((f) => f.endsWith(".json"))) {
    const lock = JSON.parse(await readFile(path.join(dir, file), "utf8").catch(() => "{}")) as { pid?: number; hostname?: string };
    if (typeof lock.pid !== "number" || lock.hostname !== os.hostname() || isRunning(lock.pid)) continue;
    await rm(path.join(dir, file), { force: true });
    await rm(path.join(dir, `${file}.attrs`), { force: true });
    removed.push(`pid ${lock.pid}`);
  }
  return removed;
}

async function workspaceOptions() {
  // The file backend refuses a folder that does not exist yet (first `up` on a machine).
  const backend = fileBackend();
  if (backend) await mkdir(backend, { recursive: true });
  pulumiCommand ??= PulumiCommand.get({ root: path.dirname(pulumiBinDir()), skipVersionCheck: true });
  return { envVars: pulumiEnv(), pulumiCommand: await pulumiCommand };
}

/** The bundled CLI, asked its version once per k8slab process (each ask is a `pulumi version`). */
let pulumiCommand: Promise<PulumiCommand> | undefined;

/** True when the lab's stack exists in the local state. */
export async function stackExists(lab: Lab): Promise<boolean> {
  const workspace = await LocalWorkspace.create({ workDir: repoRoot, ...(await workspaceOptions()) });
  return (await workspace.listStacks()).some((s) => s.name === lab.name);
}

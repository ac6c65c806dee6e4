// Lab-level actions of the machine layer: bring a lab's LAN and key up, tear everything of a lab down, report status.
import fs from "node:fs";
import path from "node:path";
import { type Lab, ownsMachines } from "../../core/index.ts";
import { labPaths } from "../../core/paths.ts";
import { type NetStatus, netDown, netnsExists, netStatus, netUp } from "./labnet.ts";
import { type CtStatus, ctDown, ctStatus, labCtNames } from "./lxc.ts";
import { labVmNames, readLabNetns, type VmStatus, vmDown, vmStatus } from "./qemu.ts";
import { type LabNetSpec, parseLabNetSpec } from "./spec.ts";
import { ensureLabKey } from "./ssh.ts";

export interface LabNetUpResult {
  netns: string;
  bridge: string;
  gatewayCidr: string;
  keyFile: string;
  publicKey: string;
  knownHostsFile: string;
}

/** net-up: the lab's state folder, ssh key and LAN namespace. Idempotent. */
export async function labNetUp(input: unknown): Promise<LabNetUpResult> {
  const spec: LabNetSpec = parseLabNetSpec(input);
  const l = labPaths(spec.lab);
  fs.mkdirSync(l.dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(l.dir, "net.json"), `${JSON.stringify(spec, null, 2)}\n`);
  const key = await ensureLabKey(spec.lab);
  if (!fs.existsSync(l.knownHosts)) fs.writeFileSync(l.knownHosts, "");
  await netUp(spec);
  return { netns: spec.netns, bridge: spec.bridge, gatewayCidr: spec.gatewayCidr, ...key, knownHostsFile: l.knownHosts };
}

/** The lab's namespace exists and each of these machines (VMs or containers) runs. */
export async function labRunning(lab: string, netns: string, nodes: string[]): Promise<boolean> {
  if (!netnsExists(netns)) return false;
  const running = new Set((await labStatus(lab)).nodes.filter((n) => n.running).map((n) => n.name));
  return nodes.every((n) => running.has(n));
}

/** A lab that is up: its admin kubeconfig written and, for k8slab's own machines, its namespace and every node running. */
export async function labIsUp(lab: Lab): Promise<boolean> {
  if (!fs.existsSync(labPaths(lab.name).adminKubeconfig)) return false;
  return (
    !ownsMachines(lab) ||
    labRunning(
      lab.name,
      lab.netns,
      lab.nodes.map((n) => n.name),
    )
  );
}

/**
 * down: every container node and VM of the lab (found by their pidfiles and state folders, not by a
 * caller's list), then the namespace (bridge, taps and veths go with it), then the lab's state (key,
 * overlays, logs) and run folders (pidfiles, sockets). Idempotent. keepLogs keeps the logs folder for diagnosis.
 */
export async function labDown(lab: string, opts: { netns?: string; keepLogs?: boolean } = {}): Promise<{ removed: string[] }> {
  const removed: string[] = [];
  const netns = opts.netns ?? readLabNetns(lab);
  // Containers first: their forwards' pidfiles would otherwise look like VMs' (labVmNames reads the run folder).
  const containers = labCtNames(lab);
  // In parallel: each may wait for its systemd's poweroff.
  await Promise.all(containers.map((name) => ctDown({ lab, name, netns })));
  removed.push(...containers.map((name) => `container ${name}`));
  for (const name of labVmNames(lab)) {
    await vmDown({ lab, name, netns });
    removed.push(`vm ${name}`);
  }
  if (netnsExists(netns)) {
    await netDown({ netns });
    removed.push(`netns ${netns}`);
  }
  const l = labPaths(lab);
  if (fs.existsSync(l.dir)) {
    if (opts.keepLogs) {
      for (const f of fs.readdirSync(l.dir)) if (path.join(l.dir, f) !== l.logs) fs.rmSync(path.join(l.dir, f), { recursive: true, force: true });
    } else fs.rmSync(l.dir, { recursive: true, force: true });
    removed.push(`state ${l.dir}${opts.keepLogs ? " (logs kept)" : ""}`);
  }
  if (fs.existsSync(l.run)) {
    fs.rmSync(l.run, { recursive: true, force: true });
    removed.push(`run ${l.run}`);
  }
  // The shared parents too, once no lab is left in them.
  for (const dir of [path.dirname(l.run), path.dirname(l.dir)]) {
    try {
      fs.rmdirSync(dir);
    } catch {
      /* not empty, or already gone */
    }
  }
  return { removed };
}

export interface LabStatus {
  lab: string;
  netns: string;
  net: NetStatus;
  keyFile?: string;
  knownHostsFile?: string;
  nodes: (VmStatus | CtStatus)[];
}

export async function labStatus(lab: string): Promise<LabStatus> {
  const l = labPaths(lab);
  const netns = readLabNetns(lab);
  const cts = labCtNames(lab);
  return {
    lab,
    netns,
    net: await netStatus(netns),
    ...(fs.existsSync(l.key) ? { keyFile: l.key, knownHostsFile: l.knownHosts } : {}),
    nodes: [
      ...cts.map((n) => ctStatus(lab, n)),
      ...labVmNames(lab)
        .filter((n) => !cts.includes(n))
        .map((n) => vmStatus(lab, n)),
    ],
  };
}

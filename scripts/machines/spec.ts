// The machine layer's input shapes (validated with zod, from the lab schema's own field types), and
// the identities derived for a VM (MAC, SMBIOS UUID). Names come from core/names.ts, paths from core/paths.ts.
import { createHash } from "node:crypto";
import path from "node:path";
import ipaddr from "ipaddr.js";
import { z } from "zod";
import { formatPath, LAN_PREFIX } from "../../core/lab.ts";
import { LAN_BRIDGE, NETNS_MAX, netnsOf } from "../../core/names.ts";
import { cpus, dnsLabel, ifName, memoryMiB, port } from "../../core/schema.ts";
import { cacheRoot } from "../toolchain/paths.ts";

const labName = dnsLabel;
const nodeName = dnsLabel;
const netnsName = z.string().regex(new RegExp(`^[A-Za-z0-9_.-]{1,${NETNS_MAX}}$`), `a network namespace name of at most ${NETNS_MAX} characters`);

/** One lab's LAN: a network namespace holding a bridge that carries the gateway address. */
/** How long vm-up waits for a booted guest's ssh; the Pulumi step around it allows more, so this message is the one the user sees. */
export const VM_SSH_WAIT_SEC = 600;

export const LabNetSpecSchema = z.strictObject({
  /** Lab name; names the namespace and the state folders. */
  lab: labName,
  /** Network namespace that holds the LAN (default: k8slab-<lab>). */
  netns: netnsName,
  /** Bridge inside the namespace (its name is private to the namespace). */
  bridge: ifName,
  /** Gateway address with prefix, e.g. 192.168.0.1/24; the namespace is also the lab's "outside client". */
  gatewayCidr: z.cidrv4(),
});
export type LabNetSpec = z.infer<typeof LabNetSpecSchema>;

/** One QEMU VM on a lab LAN. */
export const MachineSpecSchema = z.strictObject({
  lab: labName,
  /** Hostname, e.g. node1. */
  name: nodeName,
  /** LAN address, e.g. 192.168.0.21. */
  address: z.ipv4(),
  prefixLength: z.number().int().min(LAN_PREFIX.min).max(LAN_PREFIX.max),
  /** Default gateway on the LAN (the namespace's bridge address). */
  gateway: z.ipv4(),
  cpus,
  memoryMiB,
  /** Host loopback port forwarded to the VM's sshd. */
  sshPort: port,
  /** More host-loopback forwards, e.g. {host: 6443, guest: 6443} for the API server on node1. */
  extraForwards: z.array(z.strictObject({ host: port, guest: port })).default([]),
  /** Namespace and bridge of the LAN (default: derived from lab, as net-up does). */
  netns: netnsName.optional(),
  bridge: ifName.optional(),
  /** Extra /etc/hosts entries, normally every node of the lab. */
  hosts: z.array(z.strictObject({ name: z.string().min(1), address: z.ipv4() })).default([]),
  /** Resolvers for /etc/resolv.conf (default: the gateway, which answers "port unreachable" at once). */
  nameservers: z.array(z.ipv4()).optional(),
  /**
   * qemu: a disk image (scripts/images/store.ts) the VM gets a copy-on-write overlay of when its disk is made, kept
   * with that disk; not part of the VM's identity (a new store serves the next new VM, the running one is left alone).
   */
  containerdStore: z.string().min(1).optional(),
  /** qemu: a read-only disk image with the bundle's node binaries (scripts/toolchain/bundle-disk.ts), attached as it is. */
  bundleDisk: z.string().min(1).optional(),
});
export type MachineSpecInput = z.input<typeof MachineSpecSchema>;
export type MachineSpec = z.output<typeof MachineSpecSchema>;

/** What the whole lab needs from the machine layer: used by preflight and the e2e test. */
export const LabMachinesSchema = z.strictObject({
  net: LabNetSpecSchema,
  /** Which driver starts the machines: QEMU VMs or LXC system containers (same MachineSpec). */
  driver: z.enum(["qemu", "container"]).default("qemu"),
  machines: z.array(MachineSpecSchema).min(1),
});
export type LabMachines = z.output<typeof LabMachinesSchema>;
export type LabMachinesInput = z.input<typeof LabMachinesSchema>;

/** An existing host the ssh driver uses instead of a VM. */
export const SshHostSpecSchema = z.strictObject({
  host: z.string().min(1),
  port: port.default(22),
  user: z.string().min(1).default("root"),
  keyFile: z.string().min(1),
  /** known_hosts file; with none the host key is accepted on first use into the lab's file. */
  knownHostsFile: z.string().optional(),
  timeoutSec: z.number().positive().default(300),
});
export type SshHostSpec = z.output<typeof SshHostSpecSchema>;

/** How the host reaches a VM: what vm-up prints and the Pulumi tier feeds to remote.Command. */
export interface SshEndpoint {
  host: string;
  port: number;
  user: string;
  keyFile: string;
  knownHostsFile: string;
}

export function netOf(spec: MachineSpec): { netns: string; bridge: string } {
  return { netns: spec.netns ?? netnsOf(spec.lab), bridge: spec.bridge ?? LAN_BRIDGE };
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** Stable, locally administered MAC (QEMU's 52:54:00 prefix) from lab and node name. */
export function macFor(lab: string, name: string): string {
  const d = digest(`mac/${lab}/${name}`);
  return ["52", "54", "00", ...[d[0], d[1], d[2]].map((b) => b.toString(16).padStart(2, "0"))].join(":");
}

/** Stable SMBIOS UUID: kubelet and containerd read it as the node's system UUID. */
export function uuidFor(lab: string, name: string): string {
  const h = digest(`uuid/${lab}/${name}`).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The LAN a machine sits on, as a CIDR (network address/prefix). */
export function lanOf(spec: Pick<MachineSpec, "address" | "prefixLength">): string {
  const net = ipaddr.IPv4.networkAddressFromCIDR(`${spec.address}/${spec.prefixLength}`);
  return `${net.toString()}/${spec.prefixLength}`;
}

/** The node images live in the same cache as the toolchain bundle. */
export { cacheRoot };
export function imagesDir(): string {
  return path.join(cacheRoot(), "images");
}
/** Every host-loopback forward of a machine, ssh first. */
export function forwardsOf(spec: MachineSpec): { host: number; guest: number }[] {
  return [{ host: spec.sshPort, guest: 22 }, ...spec.extraForwards];
}

/** zod issues as "path: reason" lines, the project's error format (the lab file's paths: machines[0].gateway). */
export function issueLines(error: z.ZodError, prefix: PropertyKey[] = []): string[] {
  return error.issues.map((i) => `${formatPath([...prefix, ...i.path])}: ${i.message}`);
}

export class SpecError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "SpecError";
  }
}

export function parseMachineSpec(input: unknown): MachineSpec {
  const r = MachineSpecSchema.safeParse(input);
  if (!r.success) throw new SpecError(issueLines(r.error));
  const s = r.data;
  const problems: string[] = [];
  const cidr = `${s.address}/${s.prefixLength}`;
  if (!ipaddr.IPv4.parse(s.gateway).match(ipaddr.IPv4.parseCIDR(cidr))) problems.push(`gateway: ${s.gateway} is not on ${lanOf(s)}`);
  if (s.gateway === s.address) problems.push(`address: equals the gateway ${s.gateway}`);
  const ports = forwardsOf(s).map((f) => f.host);
  const dup = ports.find((p, i) => ports.indexOf(p) !== i);
  if (dup !== undefined) problems.push(`extraForwards: host port ${dup} is used twice`);
  if (problems.length) throw new SpecError(problems);
  return s;
}

export function parseLabNetSpec(input: unknown): LabNetSpec {
  const r = LabNetSpecSchema.safeParse(input);
  if (!r.success) throw new SpecError(issueLines(r.error));
  return r.data;
}

export function parseLabMachines(input: unknown): LabMachines {
  const r = LabMachinesSchema.safeParse(input);
  if (!r.success) throw new SpecError(issueLines(r.error));
  const lab = r.data;
  const problems: string[] = [];
  const [gw, gwPrefix] = lab.net.gatewayCidr.split("/");
  lab.machines.forEach((m, i) => {
    try {
      parseMachineSpec(m);
    } catch (e) {
      if (e instanceof SpecError) problems.push(...e.problems.map((p) => `machines[${i}].${p}`));
      else throw e;
    }
    if (m.lab !== lab.net.lab) problems.push(`machines[${i}].lab: ${m.lab} differs from net.lab ${lab.net.lab}`);
    if (m.gateway !== gw || String(m.prefixLength) !== gwPrefix)
      problems.push(`machines[${i}].gateway: ${m.gateway}/${m.prefixLength} differs from net.gatewayCidr ${lab.net.gatewayCidr}`);
    const { netns, bridge } = netOf(m);
    if (netns !== lab.net.netns) problems.push(`machines[${i}].netns: ${netns} differs from net.netns ${lab.net.netns}`);
    if (bridge !== lab.net.bridge) problems.push(`machines[${i}].bridge: ${bridge} differs from net.bridge ${lab.net.bridge}`);
  });
  const seen = new Map<string, string>();
  lab.machines.forEach((m, i) => {
    for (const [what, v] of [["name", m.name], ["address", m.address], ...forwardsOf(m).map((f) => ["port", String(f.host)])] as const) {
      const k = `${what}:${v}`;
      const where = what === "port" ? "sshPort/extraForwards" : what;
      if (seen.has(k)) problems.push(`machines[${i}].${where}: ${v} is also used by ${seen.get(k)}`);
      else seen.set(k, `machines[${i}]`);
    }
  });
  if (problems.length) throw new SpecError(problems);
  return lab;
}

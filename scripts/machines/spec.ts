// The machine layer's input shapes (validated with zod), their derived names, and where things live on disk.
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import ipaddr from 'ipaddr.js';
import { cacheRoot } from '../toolchain/paths.ts';
import { z } from 'zod';

// Lab and node names are RFC 1123 labels, as in the lab file. They name files, a namespace, a hostname.
const dnsLabel = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, "a lowercase RFC 1123 label (a-z, 0-9, '-')");
const labName = dnsLabel;
const nodeName = dnsLabel;
const port = z.number().int().min(1).max(65535);
// Linux interface names: at most 15 bytes, no "/" or whitespace.
const ifName = z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, 'an interface name of at most 15 characters');

/** One lab's LAN: a network namespace holding a bridge that carries the gateway address. */
export const LabNetSpecSchema = z.strictObject({
  /** Lab name; names the namespace and the state folders. */
  lab: labName,
  /** Network namespace that holds the LAN (default: k8slab-<lab>). */
  netns: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
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
  prefixLength: z.number().int().min(8).max(30),
  /** Default gateway on the LAN (the namespace's bridge address). */
  gateway: z.ipv4(),
  cpus: z.number().int().min(1).max(64),
  memoryMiB: z.number().int().min(256).max(262144),
  /** Host loopback port forwarded to the VM's sshd. */
  sshPort: port,
  /** More host-loopback forwards, e.g. {host: 6443, guest: 6443} for the API server on node1. */
  extraForwards: z.array(z.strictObject({ host: port, guest: port })).default([]),
  /** Namespace and bridge of the LAN (default: derived from lab, as net-up does). */
  netns: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).optional(),
  bridge: ifName.optional(),
  /** Extra /etc/hosts entries, normally every node of the lab. */
  hosts: z.array(z.strictObject({ name: z.string().min(1), address: z.ipv4() })).default([]),
  /** Resolvers for /etc/resolv.conf (default: the gateway, which answers "port unreachable" at once). */
  nameservers: z.array(z.ipv4()).optional(),
});
export type MachineSpecInput = z.input<typeof MachineSpecSchema>;
export type MachineSpec = z.output<typeof MachineSpecSchema>;

/** What the whole lab needs from the machine layer: used by preflight and the e2e test. */
export const LabMachinesSchema = z.strictObject({
  net: LabNetSpecSchema,
  machines: z.array(MachineSpecSchema).min(1),
});
export type LabMachines = z.output<typeof LabMachinesSchema>;
export type LabMachinesInput = z.input<typeof LabMachinesSchema>;

/** An existing host the ssh driver uses instead of a VM. */
export const SshHostSpecSchema = z.strictObject({
  host: z.string().min(1),
  port: port.default(22),
  user: z.string().min(1).default('root'),
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

export function netnsFor(lab: string): string {
  return `k8slab-${lab}`;
}

/** Default LAN for a lab: namespace k8slab-<lab>, bridge "lan0". */
export function defaultLabNet(lab: string, gatewayCidr: string): LabNetSpec {
  return { lab, netns: netnsFor(lab), bridge: 'lan0', gatewayCidr };
}

export function netOf(spec: MachineSpec): { netns: string; bridge: string } {
  return { netns: spec.netns ?? netnsFor(spec.lab), bridge: spec.bridge ?? 'lan0' };
}

/** The VM's tap in the lab namespace: tap-<node>, or a hash when that would pass the kernel's 15-byte limit. */
export function tapFor(name: string): string {
  return name.length <= 11 ? `tap-${name}` : `tap-${createHash('sha256').update(name).digest('hex').slice(0, 11)}`;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Stable, locally administered MAC (QEMU's 52:54:00 prefix) from lab and node name. */
export function macFor(lab: string, name: string): string {
  const d = digest(`mac/${lab}/${name}`);
  return ['52', '54', '00', ...[d[0], d[1], d[2]].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** Stable SMBIOS UUID: kubelet and containerd read it as the node's system UUID. */
export function uuidFor(lab: string, name: string): string {
  const h = digest(`uuid/${lab}/${name}`).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The LAN a machine sits on, as a CIDR (network address/prefix). */
export function lanOf(spec: Pick<MachineSpec, 'address' | 'prefixLength'>): string {
  const net = ipaddr.IPv4.networkAddressFromCIDR(`${spec.address}/${spec.prefixLength}`);
  return `${net.toString()}/${spec.prefixLength}`;
}

/** The node images live in the same cache as the toolchain bundle. */
export { cacheRoot };
export function imagesDir(): string {
  return path.join(cacheRoot(), 'images');
}
/** Lab state (keys, overlays, logs); everything under it is removed by `down`. */
export function stateRoot(): string {
  return process.env.K8SLAB_STATE || path.join(os.homedir(), '.local', 'state', 'k8slab');
}
/** Pidfiles and sockets: volatile, so a host reboot never leaves stale pids to act on. */
export function runRoot(): string {
  return process.env.K8SLAB_RUN || '/run/k8slab';
}

export interface LabPaths {
  dir: string;
  key: string;
  pubKey: string;
  knownHosts: string;
  logs: string;
  vms: string;
  run: string;
}
export function labPaths(lab: string): LabPaths {
  const dir = path.join(stateRoot(), 'labs', lab);
  return {
    dir,
    key: path.join(dir, 'id_ed25519'),
    pubKey: path.join(dir, 'id_ed25519.pub'),
    knownHosts: path.join(dir, 'known_hosts'),
    logs: path.join(dir, 'logs'),
    vms: path.join(dir, 'vms'),
    run: path.join(runRoot(), lab),
  };
}

function socketPath(p: string): string {
  return p.length < 100 ? p : path.join(runRoot(), `${createHash('sha256').update(p).digest('hex').slice(0, 16)}.qmp`);
}

export interface VmPaths {
  dir: string;
  overlay: string;
  seed: string;
  hostKey: string;
  knownHosts: string;
  state: string;
  console: string;
  pid: string;
  qmp: string;
  fwdPid: (hostPort: number) => string;
  fwdLog: (hostPort: number) => string;
}
export function vmPaths(lab: string, name: string): VmPaths {
  const l = labPaths(lab);
  const dir = path.join(l.vms, name);
  return {
    dir,
    overlay: path.join(dir, 'disk.qcow2'),
    seed: path.join(dir, 'seed.img'),
    hostKey: path.join(dir, 'ssh_host_ed25519_key'),
    knownHosts: path.join(dir, 'known_hosts'),
    state: path.join(dir, 'state.json'),
    console: path.join(l.logs, `${name}.console.log`),
    pid: path.join(l.run, `${name}.qemu.pid`),
    // A unix socket path must fit in 108 bytes; long lab and node names fall back to a hash.
    qmp: socketPath(path.join(l.run, `${name}.qmp`)),
    fwdPid: (p) => path.join(l.run, `${name}.fwd-${p}.pid`),
    fwdLog: (p) => path.join(l.logs, `${name}.fwd-${p}.log`),
  };
}

/** Every host-loopback forward of a machine, ssh first. */
export function forwardsOf(spec: MachineSpec): { host: number; guest: number }[] {
  return [{ host: spec.sshPort, guest: 22 }, ...spec.extraForwards];
}

/** zod issues as "path: reason" lines, the project's error format. */
export function issueLines(error: z.ZodError, prefix = ''): string[] {
  return error.issues.map((i) => `${[prefix, ...i.path.map(String)].filter(Boolean).join('.') || '(root)'}: ${i.message}`);
}

export class SpecError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'SpecError';
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
  const [gw, gwPrefix] = lab.net.gatewayCidr.split('/');
  lab.machines.forEach((m, i) => {
    try {
      parseMachineSpec(m);
    } catch (e) {
      if (e instanceof SpecError) problems.push(...e.problems.map((p) => `machines.${i}.${p}`));
      else throw e;
    }
    if (m.lab !== lab.net.lab) problems.push(`machines.${i}.lab: ${m.lab} differs from net.lab ${lab.net.lab}`);
    if (m.gateway !== gw || String(m.prefixLength) !== gwPrefix)
      problems.push(`machines.${i}.gateway: ${m.gateway}/${m.prefixLength} differs from net.gatewayCidr ${lab.net.gatewayCidr}`);
    const { netns, bridge } = netOf(m);
    if (netns !== lab.net.netns) problems.push(`machines.${i}.netns: ${netns} differs from net.netns ${lab.net.netns}`);
    if (bridge !== lab.net.bridge) problems.push(`machines.${i}.bridge: ${bridge} differs from net.bridge ${lab.net.bridge}`);
  });
  const seen = new Map<string, string>();
  lab.machines.forEach((m, i) => {
    for (const [what, v] of [
      ['name', m.name],
      ['address', m.address],
      ...forwardsOf(m).map((f) => ['port', String(f.host)]),
    ] as const) {
      const k = `${what}:${v}`;
      const where = what === 'port' ? 'sshPort/extraForwards' : what;
      if (seen.has(k)) problems.push(`machines.${i}.${where}: ${v} is also used by ${seen.get(k)}`);
      else seen.set(k, `machines.${i}`);
    }
  });
  if (problems.length) throw new SpecError(problems);
  return lab;
}

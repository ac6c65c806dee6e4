// Pure renderers of the machine layer: QEMU argv, kernel cmdline, per-VM seed files, forwarder argv. No I/O.

import { tapOf, UNDERLAY_NIC } from "../../core/names.ts";
import type { VmPaths } from "../../core/paths.ts";
import type { MachineSpec } from "./spec.ts";
import { forwardsOf, macFor, netOf, uuidFor } from "./spec.ts";

/** Filesystem label of the per-VM seed disk; guest/k8slab-seed.service waits for this label. */
export const SEED_LABEL = "k8slabseed";
/** Filesystem label of the image's root filesystem. */
export const ROOT_LABEL = "k8slabroot";

export type Accel = "kvm" | "tcg";

export interface BootImage {
  kernel: string;
  initrd: string;
  rootfs: string;
}

/**
 * Kernel command line. net.ifnames=0 keeps the LAN NIC "eth0" (what the probes explain);
 * mitigations=off because under TCG page-table isolation makes every syscall a TLB flush,
 * and lab VMs are not a security boundary.
 */
export function kernelCmdline(): string {
  return ["root=/dev/vda", "rw", "rootfstype=ext4", "console=ttyS0,115200", "net.ifnames=0", "mitigations=off", "panic=10"].join(" ");
}

/**
 * The accelerator flags: KVM only when it was seen to boot a kernel, else multi-threaded TCG with
 * QEMU's default CPU model (qemu64). `-cpu max,-la57` (AES-NI, PCLMULQDQ, AVX2, BMI2 for Go's TLS)
 * was measured on an idle reference lab and changed nothing (node1 37.9 vs 38.3 CPU s/min): the idle
 * cost is not in cryptography.
 */
export function accelArgs(accel: Accel): string[] {
  return accel === "kvm" ? ["-accel", "kvm", "-cpu", "host"] : ["-accel", "tcg,thread=multi"];
}

/**
 * What the code itself passes to every VM, whatever the lab file says: the Machines tier makes it an
 * input of each VM, so a change here restarts the VMs (on their disks) at the next `up`.
 */
export function guestRunInputs(): Record<string, unknown> {
  return { accel: { tcg: accelArgs("tcg"), kvm: accelArgs("kvm") }, cmdline: kernelCmdline() };
}

/** Name QEMU runs under; also how a pid from a pidfile is recognised as ours. */
export function qemuName(spec: Pick<MachineSpec, "lab" | "name">): string {
  return `k8slab-${spec.lab}-${spec.name}`;
}

/** Full qemu-system-x86_64 argv (without the binary), daemonized with a pidfile. */
/** The disks a VM has besides its own and the seed: its containerd store overlay, the bundle disk (see spec.ts). */
export interface ExtraDisks {
  containerd?: boolean;
  bundle?: string;
}

export function qemuArgv(spec: MachineSpec, image: BootImage, paths: VmPaths, accel: Accel, disks: ExtraDisks = {}): string[] {
  const { lab, name } = spec;
  return [
    "-name",
    `${qemuName(spec)},process=${qemuName(spec)}`,
    "-machine",
    "q35",
    ...accelArgs(accel),
    "-smp",
    String(spec.cpus),
    "-m",
    `${spec.memoryMiB}M`,
    "-uuid",
    uuidFor(lab, name),
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-kernel",
    image.kernel,
    "-initrd",
    image.initrd,
    "-append",
    kernelCmdline(),
    // cache=unsafe: no host fsync for guest flushes (etcd fsyncs a lot); the overlay is disposable.
    "-drive",
    `file=${paths.overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap`,
    "-drive",
    `file=${paths.seed},if=virtio,format=raw,readonly=on`,
    // The node finds it by its filesystem label, whatever device name it gets.
    ...(disks.containerd ? ["-drive", `file=${paths.containerdDisk},if=virtio,format=qcow2,cache=unsafe,discard=unmap`] : []),
    ...(disks.bundle ? ["-drive", `file=${disks.bundle},if=virtio,format=raw,readonly=on`] : []),
    "-netdev",
    `tap,id=lan,ifname=${tapOf(name)},script=no,downscript=no`,
    "-device",
    `virtio-net-pci,netdev=lan,mac=${macFor(lab, name)}`,
    "-device",
    "virtio-rng-pci",
    "-chardev",
    `file,id=console,path=${paths.console},append=on`,
    "-serial",
    "chardev:console",
    "-qmp",
    `unix:${paths.qmp},server=on,wait=off`,
    "-pidfile",
    paths.pid,
    "-daemonize",
  ];
}

/** The command that starts QEMU with its tap inside the lab namespace (nsenter leaves /sys alone). */
export function qemuCommand(spec: MachineSpec, image: BootImage, paths: VmPaths, accel: Accel, disks: ExtraDisks = {}): string[] {
  return ["nsenter", `--net=/run/netns/${netOf(spec).netns}`, "qemu-system-x86_64", ...qemuArgv(spec, image, paths, accel, disks)];
}

/**
 * A host-loopback forward into the namespace: socat listens on 127.0.0.1:host in the host
 * namespace and, per connection, enters the lab namespace to reach address:guest over the LAN.
 */
export function forwardArgv(netns: string, hostPort: number, address: string, guestPort: number): string[] {
  const inner = `nsenter --net=/run/netns/${netns} socat STDIO TCP\\:${address}\\:${guestPort}`;
  return ["socat", `TCP-LISTEN:${hostPort},bind=127.0.0.1,reuseaddr,fork`, `EXEC:${inner}`];
}

export interface SeedFile {
  /** Path relative to the guest's / */
  path: string;
  mode: number;
  content: string;
}

export interface SeedKeys {
  /** The lab's public key, for root's authorized_keys. */
  authorizedKey: string;
  /** This VM's ssh host key pair, generated on the host so its known_hosts entry is known in advance. */
  hostKey: string;
  hostKeyPub: string;
}

/** systemd-networkd config for the LAN NIC, matched by its MAC. */
export function networkdConfig(spec: MachineSpec): string {
  return [
    "# k8slab: the lab LAN (static; no DHCP on the lab bridge)",
    "[Match]",
    `MACAddress=${macFor(spec.lab, spec.name)}`,
    "",
    "[Network]",
    `Address=${spec.address}/${spec.prefixLength}`,
    `Gateway=${spec.gateway}`,
    "LinkLocalAddressing=no",
    "IPv6AcceptRA=no",
    "",
  ].join("\n");
}

export function hostsFile(spec: MachineSpec): string {
  const lines = ["127.0.0.1\tlocalhost", `${spec.address}\t${spec.name}`];
  for (const h of spec.hosts) if (h.name !== spec.name) lines.push(`${h.address}\t${h.name}`);
  lines.push("::1\tlocalhost ip6-localhost ip6-loopback", "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters");
  return `${lines.join("\n")}\n`;
}

export function resolvConf(spec: MachineSpec): string {
  const servers = spec.nameservers ?? [spec.gateway];
  return `${servers.map((s) => `nameserver ${s}`).join("\n")}\n`;
}

/**
 * Files the guest's k8slab-seed unit copies over / at every boot (see guest/k8slab-seed.sh).
 * Directories get 0755 except those listed in seedDirModes.
 */
export function seedFiles(spec: MachineSpec, keys: SeedKeys): SeedFile[] {
  const machine = {
    lab: spec.lab,
    name: spec.name,
    address: spec.address,
    prefixLength: spec.prefixLength,
    gateway: spec.gateway,
    mac: macFor(spec.lab, spec.name),
    interface: UNDERLAY_NIC,
  };
  return [
    { path: "etc/hostname", mode: 0o644, content: `${spec.name}\n` },
    { path: "etc/hosts", mode: 0o644, content: hostsFile(spec) },
    { path: "etc/resolv.conf", mode: 0o644, content: resolvConf(spec) },
    { path: "etc/systemd/network/10-k8slab-lan.network", mode: 0o644, content: networkdConfig(spec) },
    { path: "etc/k8slab/machine.json", mode: 0o644, content: `${JSON.stringify(machine, null, 2)}\n` },
    { path: "etc/ssh/ssh_host_ed25519_key", mode: 0o600, content: keys.hostKey },
    { path: "etc/ssh/ssh_host_ed25519_key.pub", mode: 0o644, content: keys.hostKeyPub },
    { path: "root/.ssh/authorized_keys", mode: 0o600, content: `${keys.authorizedKey.trim()}\n` },
  ];
}
export const seedDirModes: Record<string, number> = { root: 0o700, "root/.ssh": 0o700 };

/** known_hosts line for a VM: reachable as [127.0.0.1]:sshPort from the host and by address/name on the LAN. */
export function knownHostsLine(spec: MachineSpec, hostKeyPub: string): string {
  const [type, key] = hostKeyPub.trim().split(/\s+/);
  return `[127.0.0.1]:${spec.sshPort},${spec.address},${spec.name} ${type} ${key}\n`;
}

/** What identifies a running VM's configuration: a change means stop and start again. */
export function runFingerprint(spec: MachineSpec, imageKey: string, accel: Accel): Record<string, unknown> {
  return {
    imageKey,
    accel: accelArgs(accel),
    cmdline: kernelCmdline(),
    cpus: spec.cpus,
    memoryMiB: spec.memoryMiB,
    mac: macFor(spec.lab, spec.name),
    net: netOf(spec),
    forwards: forwardsOf(spec),
    address: spec.address,
    prefixLength: spec.prefixLength,
    gateway: spec.gateway,
    hosts: spec.hosts,
    nameservers: spec.nameservers ?? null,
  };
}

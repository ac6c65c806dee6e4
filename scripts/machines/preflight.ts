// Preflight: every reason the machine layer would fail, found before anything is created, as "check: reason" lines.
import fs from "node:fs";
import net from "node:net";
import zlib from "node:zlib";
import ipaddr from "ipaddr.js";
import { $ } from "zx";
import { checkCgroups } from "./cgroups.ts";
import type { LabMachines, MachineSpec } from "./spec.ts";
import { forwardsOf, lanOf } from "./spec.ts";

/** Host commands the machine layer runs, and the Debian package that provides each. */
export const HOST_TOOLS: Record<string, string> = {
  "qemu-system-x86_64": "qemu-system-x86",
  "qemu-img": "qemu-utils",
  debootstrap: "debootstrap",
  "mkfs.ext4": "e2fsprogs",
  debugfs: "e2fsprogs",
  ip: "iproute2",
  nsenter: "util-linux",
  socat: "socat",
  ssh: "openssh-client",
  "ssh-keygen": "openssh-client",
  "dpkg-query": "dpkg",
  timeout: "coreutils",
  "lxc-start": "lxc",
  "lxc-stop": "lxc",
  "lxc-info": "lxc",
};

/** What every driver that owns its machines runs (the LAN, keys, forwards, ssh). */
const COMMON_TOOLS = ["mkfs.ext4", "ip", "nsenter", "socat", "ssh", "ssh-keygen", "timeout"];
/** The tools each driver needs on top, at vm-up / ct-up. */
export const DRIVER_TOOLS = {
  // debugfs: the containerd store reads the node image's containerd out of its ext4 (scripts/images/store.ts).
  qemu: ["qemu-system-x86_64", "qemu-img", "debugfs", ...COMMON_TOOLS],
  container: ["lxc-start", "lxc-stop", "lxc-info", ...COMMON_TOOLS],
} as const;
/** And to build the driver's image (debootstrap, dpkg-query). */
const BUILD_TOOLS = ["debootstrap", "dpkg-query"];

/**
 * inotify instances a container node holds (systemd, journald, containerd, kubelet and its pods: 15 were
 * counted in the LXC spike). They count against root's fs.inotify.max_user_instances on the host, shared
 * with the host's own services and every other lab.
 */
export const INOTIFY_PER_NODE = 15;

/** QEMU's own overhead on top of guest memory, per VM (TCG translation cache, device state). */
export const QEMU_OVERHEAD_MIB = 384;

export class PreflightError extends Error {
  constructor(readonly problems: string[]) {
    super(`preflight failed:\n${problems.map((p) => `  ${p}`).join("\n")}`);
    this.name = "PreflightError";
  }
}

function onPath(bin: string): boolean {
  const dirs = (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/sbin"]);
  return dirs.some((d) => {
    try {
      fs.accessSync(`${d}/${bin}`, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export function checkRoot(): string[] {
  return process.getuid?.() === 0 ? [] : ["root: the machine layer creates namespaces, taps and VMs; run it as root"];
}

/** up installs the host packages with apt: a host without it is refused before anything else. */
export function checkApt(): string[] {
  const missing = ["apt-get", "dpkg-query"].filter((t) => !onPath(t));
  return missing.length
    ? [
        `system: ${missing.join(" and ")} missing: k8slab installs scripts/machines/host-packages.txt with apt (Debian, Ubuntu); on another distribution install their equivalents by hand`,
      ]
    : [];
}

export function checkTools(tools: string[] = Object.keys(HOST_TOOLS)): string[] {
  return tools.filter((t) => !onPath(t)).map((t) => `tools: ${t} is missing (apt-get install ${HOST_TOOLS[t] ?? t})`);
}

/** The host's per-user inotify instance limit. */
export function inotifyLimit(): number {
  try {
    return Number(fs.readFileSync("/proc/sys/fs/inotify/max_user_instances", "utf8").trim());
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/** inotify instances uid holds now: every process's fds that point at an inotify (read only, from /proc). */
export function inotifyInUse(uid = 0): number {
  let n = 0;
  for (const pid of fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (fs.statSync(`/proc/${pid}`).uid !== uid) continue;
      for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === "anon_inode:inotify") n++;
    } catch {
      /* the process ended meanwhile */
    }
  }
  return n;
}

/**
 * Enough inotify instances left for the container nodes to start? Pure: limit and use are inputs.
 * k8slab does not change the host's limit; it says which sysctl would.
 */
export function checkInotify(nodes: number, limit: number, inUse: number): string[] {
  const need = nodes * INOTIFY_PER_NODE;
  return inUse + need > limit
    ? [
        `inotify: ${nodes} container node(s) need about ${need} inotify instances (${INOTIFY_PER_NODE} each), but root already holds ${inUse} of the host's fs.inotify.max_user_instances=${limit}; raise it on the host (e.g. sysctl fs.inotify.max_user_instances=512) or stop another lab`,
      ]
    : [];
}

export function checkTun(): string[] {
  return fs.existsSync("/dev/net/tun") ? [] : ["tun: /dev/net/tun is missing (load the tun module)"];
}

/** A kernel feature the lab needs of the host, as the module that provides it and the config option that builds it in. */
export interface KernelNeed {
  module: string;
  config: string;
  /** Why the lab needs it, for the refusal. */
  why: string;
  /** A lab setting that would not need it, if any. */
  instead?: string;
}

const KERNEL = {
  tun: { module: "tun", config: "CONFIG_TUN" },
  vxlan: { module: "vxlan", config: "CONFIG_VXLAN" },
  bridge: { module: "bridge", config: "CONFIG_BRIDGE" },
  brNetfilter: { module: "br_netfilter", config: "CONFIG_BRIDGE_NETFILTER" },
  veth: { module: "veth", config: "CONFIG_VETH" },
  overlay: { module: "overlay", config: "CONFIG_OVERLAY_FS" },
  nfTables: { module: "nf_tables", config: "CONFIG_NF_TABLES" },
  ipVs: { module: "ip_vs", config: "CONFIG_IP_VS" },
} as const;

/**
 * What the host's kernel must offer a lab. A VM brings its own kernel: the host gives it taps (tun) only.
 * Container nodes share the host's: the pod network (bridge, veth, br_netfilter so bridged Service traffic
 * meets kube-proxy's rules), containerd's overlayfs, nf_tables (the nodes' iptables is Debian trixie's,
 * iptables-nft), the flannel backend's device (vxlan; udp's TUN) and kube-proxy's ipvs.
 */
export function kernelNeeds(driver: string, backend: string, proxyMode: string): KernelNeed[] {
  if (driver === "qemu") return [{ ...KERNEL.tun, why: "the VMs' network interfaces are taps on the lab LAN" }];
  if (driver !== "container") return [];
  const shared = "container nodes share the host's kernel";
  return [
    { ...KERNEL.bridge, why: `the pods' bridge cni0 (${shared})` },
    { ...KERNEL.veth, why: `each pod's veth pair (${shared})` },
    { ...KERNEL.brNetfilter, why: `kube-proxy's rules for Service traffic bridged to a pod on the same node (${shared})` },
    { ...KERNEL.overlay, why: `containerd's overlayfs snapshotter (${shared})` },
    { ...KERNEL.nfTables, why: `the nodes' iptables is iptables-nft (${shared})` },
    ...(backend === "vxlan" ? [{ ...KERNEL.vxlan, why: `flannel's vxlan backend (${shared})`, instead: "pods.flannel.backend: host-gw" }] : []),
    ...(backend === "udp" ? [{ ...KERNEL.tun, why: `flannel's udp backend reads its TUN device (${shared})` }] : []),
    ...(proxyMode === "ipvs"
      ? [{ ...KERNEL.ipVs, why: `kube-proxy's ipvs mode (${shared})`, instead: "services.kubeProxyMode: iptables or nftables, or driver.kind: qemu" }]
      : []),
  ];
}

/** How the host's kernel answers for a module: loaded now, loadable with modprobe, or built in by its config. */
export interface KernelProbe {
  loaded: (module: string) => boolean;
  modprobe: (module: string) => Promise<boolean>;
  /** The kernel's build config (CONFIG_X=y lines), where the host shows it; "" where it does not. */
  config: string;
  /** modules.builtin of the running kernel, where it exists. */
  builtin: string;
}

/** The running kernel's own answers (modprobe loads a module the lab needs, as the nodes would at start). */
export function hostKernel(): KernelProbe {
  const release = fs.readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  const read = (f: string, gz = false) => {
    try {
      const b = fs.readFileSync(f);
      return (gz ? zlib.gunzipSync(b) : b).toString();
    } catch {
      return "";
    }
  };
  return {
    loaded: (m) => fs.existsSync(`/sys/module/${m}`),
    modprobe: async (m) => (await $({ nothrow: true, quiet: true })`modprobe -q ${m}`).exitCode === 0,
    config: read("/proc/config.gz", true) || read(`/boot/config-${release}`),
    builtin: read(`/lib/modules/${release}/modules.builtin`),
  };
}

/** Every need the kernel does not meet, with the fix in one line. */
export async function checkKernel(needs: KernelNeed[], probe: KernelProbe): Promise<string[]> {
  const problems: string[] = [];
  for (const n of needs) {
    const builtIn = new RegExp(`^${n.config}=y$`, "m").test(probe.config) || new RegExp(`/${n.module}\\.ko$`, "m").test(probe.builtin);
    if (probe.loaded(n.module) || builtIn || (await probe.modprobe(n.module))) continue;
    problems.push(
      `kernel: ${n.module} (${n.config}) is neither loaded, loadable nor built in, and ${n.why}; modprobe ${n.module}, or boot a kernel that has it${n.instead ? `, or set ${n.instead}` : ""}`,
    );
  }
  return problems;
}

export interface HostRoute {
  dst: string;
  dev?: string;
  type?: string;
  table?: string;
}

/** Host routes (IPv4, every table) that overlap the lab LAN. Pure: routes come from `ip -j route`. */
export function overlappingRoutes(lanCidr: string, routes: HostRoute[]): HostRoute[] {
  const [lanNet, lanBits] = ipaddr.IPv4.parseCIDR(lanCidr);
  return routes.filter((r) => {
    if (!r.dst || r.dst === "default" || r.type === "broadcast" || r.type === "multicast") return false;
    const dst = r.dst.includes("/") ? r.dst : `${r.dst}/32`;
    if (!ipaddr.IPv4.isValidCIDR(dst)) return false;
    const [net, bits] = ipaddr.IPv4.parseCIDR(dst);
    // Two prefixes overlap when the shorter one contains the other's network address.
    return bits <= lanBits ? lanNet.match(net, bits) : net.match(lanNet, lanBits);
  });
}

/** The host namespace's IPv4 routes, read only. */
export async function hostRoutes(): Promise<HostRoute[]> {
  const r = await $`ip -j -4 route show table all`.nothrow().quiet();
  return r.exitCode === 0 ? (JSON.parse(r.stdout || "[]") as HostRoute[]) : [];
}

export async function checkLanRoutes(lanCidr: string, what = "net"): Promise<string[]> {
  return overlappingRoutes(lanCidr, await hostRoutes()).map(
    (r) =>
      `${what}: the lab LAN ${lanCidr} overlaps the host route ${r.dst}${r.dev ? ` dev ${r.dev}` : ""}${r.table && r.table !== "main" ? ` table ${r.table}` : ""}; choose another lab LAN`,
  );
}

/** Is 127.0.0.1:port free to listen on? */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen({ port, host: "127.0.0.1", exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

async function portOwner(port: number): Promise<string> {
  const r = await $`ss -Hltnp sport = :${port}`.nothrow().quiet();
  const m = /users:\(\("([^"]+)",pid=(\d+)/.exec(r.stdout);
  return m ? ` by ${m[1]} pid ${m[2]}` : "";
}

export async function checkPorts(ports: { port: number; field: string }[]): Promise<string[]> {
  const problems: string[] = [];
  for (const { port, field } of ports) {
    if (!(await portFree(port))) problems.push(`${field}: host port 127.0.0.1:${port} is in use${await portOwner(port)}`);
  }
  return problems;
}

export function memAvailableMiB(meminfo = fs.readFileSync("/proc/meminfo", "utf8")): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(meminfo);
  return m ? Math.floor(Number(m[1]) / 1024) : 0;
}

export function checkMemory(machines: Pick<MachineSpec, "memoryMiB" | "name">[], availableMiB = memAvailableMiB()): string[] {
  const need = machines.reduce((s, m) => s + m.memoryMiB + QEMU_OVERHEAD_MIB, 0);
  return need > availableMiB
    ? [
        `memory: ${machines.map((m) => `${m.name} ${m.memoryMiB} MiB`).join(" + ")} (+ ${QEMU_OVERHEAD_MIB} MiB QEMU each) needs ${need} MiB, only ${availableMiB} MiB available`,
      ]
    : [];
}

/** Everything for a whole lab, before net-up: the CLI's `preflight`. */
export async function preflightLab(lab: LabMachines, opts: { skipPorts?: boolean; skipTools?: boolean } = {}): Promise<string[]> {
  const container = lab.driver === "container";
  const lan = lanOf({ address: lab.net.gatewayCidr.split("/")[0], prefixLength: Number(lab.net.gatewayCidr.split("/")[1]) });
  const ports = lab.machines.flatMap((m, i) =>
    forwardsOf(m).map((f, j) => ({ port: f.host, field: `machines[${i}].${j === 0 ? "sshPort" : `extraForwards[${j - 1}].host`}` })),
  );
  return [
    ...checkRoot(),
    ...(opts.skipTools ? [] : checkTools([...DRIVER_TOOLS[lab.driver], ...BUILD_TOOLS])),
    ...(container ? [...checkInotify(lab.machines.length, inotifyLimit(), inotifyInUse()), ...checkCgroups()] : checkTun()),
    ...(await checkLanRoutes(lan, "net.gatewayCidr")),
    ...(opts.skipPorts ? [] : await checkPorts(ports)),
    // A container's memoryMiB is a cap the host need not have free; a VM's is taken at start.
    ...(container ? [] : checkMemory(lab.machines)),
  ];
}

/** What one VM needs right before it starts (its ports: only those not already forwarded by us). */
export async function preflightVm(spec: MachineSpec, ports: number[]): Promise<string[]> {
  const fields = new Map(forwardsOf(spec).map((f, j) => [f.host, j === 0 ? "sshPort" : `extraForwards[${j - 1}].host`]));
  return [
    ...checkRoot(),
    ...checkTools([...DRIVER_TOOLS.qemu]),
    ...checkTun(),
    ...(await checkPorts(ports.map((port) => ({ port, field: fields.get(port) ?? "port" })))),
    ...checkMemory([spec]),
  ];
}

/** What one container node needs right before it starts (its ports: only those not already forwarded by us). */
export async function preflightCt(spec: MachineSpec, ports: number[]): Promise<string[]> {
  const fields = new Map(forwardsOf(spec).map((f, j) => [f.host, j === 0 ? "sshPort" : `extraForwards[${j - 1}].host`]));
  return [
    ...checkRoot(),
    ...checkTools([...DRIVER_TOOLS.container]),
    ...checkCgroups(),
    ...(await checkPorts(ports.map((port) => ({ port, field: fields.get(port) ?? "port" })))),
  ];
}

// Pure renderers of the container driver: a node's mount plan, its LXC config, its net hook, its per-node files.
// No I/O. The lines and their reasons come from the LXC spike (docs/machines.md, "The container driver").
import { containerOf, UNDERLAY_NIC, vethOf } from "../../core/names.ts";
import type { CtPaths } from "../../core/paths.ts";
import { type CgroupLayout, lxcCgroupLines } from "./cgroups.ts";
import { type SeedFile, type SeedKeys, seedFiles } from "./render.ts";
import { type MachineSpec, macFor, netOf, uuidFor } from "./spec.ts";

/** The node's init: the entrypoint baked into the container rootfs (scripts/machines/container/entrypoint) execs systemd. */
export const CT_INIT = "/usr/local/sbin/k8slab-entrypoint /sbin/init";
/** Seconds lxc-stop waits for systemd's clean poweroff (SIGRTMIN+3) before it kills the container. */
export const CT_STOP_TIMEOUT_SEC = 30;
/** The same when the node is removed afterwards (ct-down): nothing of it is kept, so it is killed at once (0). */
export const CT_DOWN_STOP_TIMEOUT_SEC = 0;

export interface CtMountPlan {
  /** LXC's overlay backend: lxc-start mounts it inside the container's own mount namespace, so the host keeps no mount. */
  rootfs: string;
  lower: string;
  upper: string;
  work: string;
  /** Bind mounts from the host's ext4 into the node (target relative to the node's /). */
  binds: { source: string; target: string; create: "dir" | "file" }[];
}

/**
 * Where a node's root comes from: the cached rootfs as the read-only lower layer, the node's folder as
 * upper and work, and /var/lib/containerd bound from a plain ext4 folder (containerd's overlayfs
 * snapshotter does not work on an overlay), plus the host's /dev/kmsg for kubelet's OOM watcher.
 */
export function ctMountPlan(paths: Pick<CtPaths, "upper" | "work" | "containerd">, lower: string): CtMountPlan {
  return {
    rootfs: `overlay:${lower}:${paths.upper}`,
    lower,
    upper: paths.upper,
    work: paths.work,
    binds: [
      { source: paths.containerd, target: "var/lib/containerd", create: "dir" },
      { source: "/dev/kmsg", target: "dev/kmsg", create: "file" },
    ],
  };
}

/** What the container driver passes to every node whatever the lab file says: a change restarts the nodes. */
export function ctRunInputs(): Record<string, unknown> {
  return { init: CT_INIT, security: SECURITY_LINES };
}

/**
 * The privilege lines. No include of LXC's common.conf: its seccomp profile, capability drops and device
 * deny-list stop the node's containerd and runc. proc:mixed and sys:mixed keep /proc/sys and /sys read-only
 * apart from net, so the node's systemd and kubelet cannot change a host-global sysctl by accident (a
 * privileged node could still remount them: this is no security boundary). cgroup:rw:force gives the
 * node's systemd a writable cgroup tree (v1 hierarchies, or the unified one) inside its cgroup namespace.
 * Every device is allowed (the node's containerd and runc make their own): lxcCgroupLines, in the host's keys.
 */
const SECURITY_LINES = [
  "lxc.cap.drop =",
  "lxc.apparmor.profile = unconfined",
  "lxc.mount.auto = proc:mixed sys:mixed cgroup:rw:force",
  "lxc.autodev = 1",
  "lxc.tty.max = 0",
  "lxc.pty.max = 64",
];

/** The node's LXC config (lxcpath/<container>/config). */
export function lxcConfig(spec: MachineSpec, plan: CtMountPlan, paths: Pick<CtPaths, "netHook" | "console" | "lxcLog">, layout: CgroupLayout): string {
  return [
    `# k8slab container node ${spec.lab}/${spec.name}: privileged, systemd as init (rendered by scripts/machines/lxc-config.ts).`,
    "# Deliberately no include of /usr/share/lxc/config/common.conf (see SECURITY_LINES there).",
    `lxc.uts.name = ${spec.name}`,
    "lxc.arch = x86_64",
    `lxc.rootfs.path = ${plan.rootfs}`,
    ...plan.binds.map((b) => `lxc.mount.entry = ${b.source} ${b.target} none bind,create=${b.create} 0 0`),
    "",
    "# The LAN: a veth whose node end is eth0, with the MAC systemd-networkd's config matches (as on a VM).",
    "# No lxc.net.0.link: under nsenter --net LXC looks for the bridge in the host's /sys; the hook attaches it.",
    "lxc.net.0.type = veth",
    `lxc.net.0.name = ${UNDERLAY_NIC}`,
    `lxc.net.0.hwaddr = ${macFor(spec.lab, spec.name)}`,
    `lxc.net.0.veth.pair = ${vethOf(spec.name)}`,
    `lxc.net.0.script.up = ${paths.netHook}`,
    "lxc.net.0.flags = up",
    "",
    ...SECURITY_LINES,
    "",
    `# Devices, and limits from the lab file: a cap, not a reservation (kubelet still sees the host's CPUs and memory); cgroup ${layout}.`,
    ...lxcCgroupLines(layout, spec.memoryMiB, spec.cpus),
    "",
    `lxc.init.cmd = ${CT_INIT}`,
    // systemd powers off cleanly on SIGRTMIN+3.
    "lxc.signal.halt = SIGRTMIN+3",
    `lxc.console.logfile = ${paths.console}`,
    `lxc.log.file = ${paths.lxcLog}`,
    "lxc.log.level = WARN",
    "",
  ].join("\n");
}

/**
 * lxc.net.0.script.up, run by lxc-start in the lab namespace as `<hook> <container> net up veth <host end>`
 * (LXC_NET_PEER is empty at that point in LXC 5.0): put the host end on the lab bridge, by netlink.
 */
export function netUpHook(spec: MachineSpec): string {
  const { bridge } = netOf(spec);
  return [
    "#!/bin/sh",
    `# k8slab: attach ${containerOf(spec.lab, spec.name)}'s veth to the lab bridge ${bridge} (rendered by scripts/machines/lxc-config.ts).`,
    "set -e",
    `peer=\${5:-${vethOf(spec.name)}}`,
    `ip link set dev "$peer" master ${bridge}`,
    'ip link set dev "$peer" up',
    "",
  ].join("\n");
}

/**
 * What a VM reads from its seed disk, written into the node's upper layer before it starts, plus a
 * stable machine-id (a VM makes one at first boot; a container node should not get a new one each start).
 */
export function ctNodeFiles(spec: MachineSpec, keys: SeedKeys): SeedFile[] {
  return [...seedFiles(spec, keys), { path: "etc/machine-id", mode: 0o444, content: `${uuidFor(spec.lab, spec.name).replace(/-/g, "")}\n` }];
}

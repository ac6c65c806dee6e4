// The host's cgroups as container nodes meet them, in each of the three layouts a Linux host boots with:
// v1 (a hierarchy per controller set: Debian 10, these machines), v2 (one unified tree: Debian 11 and
// later, Ubuntu 21.10 and later, Fedora) and hybrid (v1 controllers beside systemd's unified tree at
// /sys/fs/cgroup/unified). What LXC is told to limit, what the host charges a node, and what LXC leaves
// behind, read from whichever the host has. Every function takes the root, so tests give a folder of their own.
import fs from "node:fs";
import path from "node:path";

export const CGROUP_ROOT = "/sys/fs/cgroup";
/** CPU quota period: cpus x this is the quota (cfs_quota_us on v1, cpu.max on v2). */
export const CPU_PERIOD_US = 100_000;

export type CgroupLayout = "v1" | "v2" | "hybrid";

/** Which layout the host has: a unified root (v2), v1 hierarchies with or without systemd's unified one, or none. */
export function cgroupLayout(root = CGROUP_ROOT): CgroupLayout | undefined {
  if (fs.existsSync(path.join(root, "cgroup.controllers"))) return "v2";
  if (!fs.existsSync(path.join(root, "memory"))) return undefined;
  return fs.existsSync(path.join(root, "unified", "cgroup.controllers")) ? "hybrid" : "v1";
}

/** The controllers a node needs limited, missing from the host: each refused with what would give it. */
export function checkCgroups(root = CGROUP_ROOT): string[] {
  const layout = cgroupLayout(root);
  if (!layout) return [`cgroups: no cgroup v2 tree and no v1 memory hierarchy at ${root}; container nodes need one (mount cgroup2 there)`];
  const missing =
    layout === "v2"
      ? ["memory", "cpu"].filter((c) => !fs.readFileSync(path.join(root, "cgroup.controllers"), "utf8").split(/\s+/).includes(c))
      : ["memory", "cpu"].filter((c) => !fs.existsSync(path.join(root, c)));
  return missing.map(
    (c) => `cgroups: the host's ${layout} cgroups have no ${c} controller, which container nodes are limited with; boot with it enabled (cgroup_enable=${c})`,
  );
}

/**
 * LXC's lines for a node's limits and devices, in the keys of the host's layout (lxc.cgroup.* on v1 and
 * hybrid, whose controllers are v1; lxc.cgroup2.* on v2: LXC refuses the other). Every device is allowed:
 * the node's containerd and runc make their own.
 */
export function lxcCgroupLines(layout: CgroupLayout, memoryMiB: number, cpus: number): string[] {
  const bytes = memoryMiB * 1024 * 1024;
  const quota = Math.round(cpus * CPU_PERIOD_US);
  return layout === "v2"
    ? ["lxc.cgroup2.devices.allow = a", `lxc.cgroup2.memory.max = ${bytes}`, `lxc.cgroup2.cpu.max = ${quota} ${CPU_PERIOD_US}`]
    : [
        "lxc.cgroup.devices.allow = a",
        `lxc.cgroup.memory.limit_in_bytes = ${bytes}`,
        `lxc.cgroup.cpu.cfs_period_us = ${CPU_PERIOD_US}`,
        `lxc.cgroup.cpu.cfs_quota_us = ${quota}`,
      ];
}

/** The trees a layout has: v2 one (the root); v1 one per hierarchy; hybrid both (LXC makes its folders in each). */
function trees(root: string): string[] {
  if (!fs.existsSync(root)) return [];
  if (cgroupLayout(root) === "v2") return [root];
  return fs
    .readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => path.join(root, e.name));
}

/**
 * LXC's folders for a container in each tree: lxc.payload.<name> (the node) and lxc.monitor.<name>. At the
 * top where LXC starts as root (it escapes to the root cgroup); searched deeper too, for a host where it is
 * told to stay in its own (lxc.cgroup.relative). Other containers' payloads are not entered.
 */
export function lxcCgroupDirs(container: string, root = CGROUP_ROOT): string[] {
  const names = [`lxc.payload.${container}`, `lxc.monitor.${container}`];
  const found: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // gone meanwhile
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      if (names.includes(e.name)) found.push(path.join(dir, e.name));
      else if (depth < 6 && !e.name.startsWith("lxc.payload.")) walk(path.join(dir, e.name), depth + 1);
    }
  };
  for (const t of trees(root)) walk(t, 0);
  return found;
}

/** LXC's lxc.pivot folder (where it parks monitors) in each tree: shared by every container, removed only when empty. */
export function lxcPivotDirs(root = CGROUP_ROOT): string[] {
  return trees(root)
    .map((t) => path.join(t, "lxc.pivot"))
    .filter((d) => fs.existsSync(d));
}

/** What the host's memory controller charges a node, and its limit (left out: no limit, or not readable). */
export function memoryCharge(container: string, root = CGROUP_ROOT): { memoryUsageMiB?: number; memoryLimitMiB?: number } {
  const layout = cgroupLayout(root);
  const v2 = layout === "v2";
  const dir = v2 ? path.join(root, `lxc.payload.${container}`) : path.join(root, "memory", `lxc.payload.${container}`);
  const mib = (file: string): number | undefined => {
    try {
      const text = fs.readFileSync(path.join(dir, file), "utf8").trim();
      // v2 writes "max" for no limit; v1 a number near 2^63.
      const n = Number(text);
      return text === "max" || !Number.isFinite(n) || n >= 2 ** 62 ? undefined : Math.round(n / 1024 / 1024);
    } catch {
      return undefined;
    }
  };
  const memoryUsageMiB = mib(v2 ? "memory.current" : "memory.usage_in_bytes");
  const memoryLimitMiB = mib(v2 ? "memory.max" : "memory.limit_in_bytes");
  return { ...(memoryUsageMiB !== undefined ? { memoryUsageMiB } : {}), ...(memoryLimitMiB !== undefined ? { memoryLimitMiB } : {}) };
}

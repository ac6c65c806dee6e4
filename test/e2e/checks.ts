// What the end-to-end tests conclude from what they read on a live lab (a probe report, the host's
// cgroups, a node's memory figures, their own settings), as pure functions: test/e2e-checks.test.ts
// feeds them recorded and made-up inputs, so each check is shown to fail when it should without a lab.
import fs from "node:fs";
import path from "node:path";
import { TIER_DEPENDENCIES, TIER_IDS, type TierId } from "../../scripts/probes/contract.ts";
import type { ProbeReport, TierResult } from "../../scripts/probes/types.ts";

// ---------------------------------------------------------------- a fault's verdicts

/** The tiers that stand on `tier` through their hard dependencies, directly or through other tiers, bottom-up. */
export function tiersStandingOn(tier: TierId): TierId[] {
  const above = new Set<TierId>();
  for (let grew = true; grew; ) {
    grew = false;
    for (const id of TIER_IDS) {
      if (above.has(id) || !TIER_DEPENDENCIES[id].hard.some((d) => d === tier || above.has(d))) continue;
      above.add(id);
      grew = true;
    }
  }
  return TIER_IDS.filter((id) => above.has(id));
}

const described = (r: TierResult) =>
  `${r.verdict}${r.blockedBy ? ` by ${r.blockedBy}` : ""}${r.firstBrokenHop ? `: ${r.firstBrokenHop}` : r.reason ? `: ${r.reason}` : ""}`;

/**
 * What is wrong with a probe run on a lab with one fault, at `tier`: that tier must fail; every tier
 * that stands on it (tiersStandingOn, from TIER_DEPENDENCIES) must be blocked by it; every other tier
 * must pass (or be skipped, as a one-node lab's cross-node tiers are). Empty when the run is right.
 */
export function faultVerdictProblems(report: ProbeReport, tier: TierId): string[] {
  const problems: string[] = [];
  const faulted = report.results.find((r) => r.tier === tier);
  if (!faulted) return [`${tier} is not in the report`];
  if (faulted.verdict !== "fail") problems.push(`${tier}: ${described(faulted)}, not fail`);
  const standing = tiersStandingOn(tier);
  for (const r of report.results) {
    if (r.tier === tier) continue;
    if (standing.includes(r.tier)) {
      if (r.verdict !== "blocked" || r.blockedBy !== tier) problems.push(`${r.tier}: ${described(r)}, not blocked by ${tier} (it stands on ${tier})`);
    } else if (r.verdict !== "pass" && r.verdict !== "skipped") {
      problems.push(`${r.tier}: ${described(r)}, not pass (it does not stand on ${tier})`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------- settings

/** K8SLAB_E2E_HEALTHY_RUNS: how many times the healthy lab is probed (default 3). Fewer than one would check nothing, so it is refused. */
export function healthyRuns(value: string | undefined): number {
  if (value === undefined || value === "") return 3;
  if (!/^[1-9]\d*$/.test(value.trim())) {
    throw new Error(
      `K8SLAB_E2E_HEALTHY_RUNS=${JSON.stringify(value)}: give how many times to probe the healthy lab, a whole number of at least 1 (0 would check nothing)`,
    );
  }
  return Number(value);
}

// ---------------------------------------------------------------- cgroups

/** A cgroup filesystem as /proc/self/mountinfo shows it: where it is mounted, which cgroup it shows there, and its controllers. */
export interface CgroupMount {
  mountPoint: string;
  /** The cgroup at the mount point ("/" unless only part of the tree is mounted). */
  root: string;
  version: 1 | 2;
  /** v1: the hierarchy's controllers and name= options (memory; cpu,cpuacct; name=systemd); v2: none. */
  controllers: string[];
}

const unescapeMountField = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));

/** Every cgroup (v1) and cgroup2 mount in a mountinfo text. */
export function cgroupMounts(mountinfo: string): CgroupMount[] {
  return mountinfo.split("\n").flatMap((line): CgroupMount[] => {
    const [before, after] = line.split(" - ");
    if (!after) return [];
    const f = before.split(" ");
    const [fstype, , superOptions = ""] = after.split(" ");
    if (fstype !== "cgroup" && fstype !== "cgroup2") return [];
    const controllers =
      fstype === "cgroup"
        ? superOptions
            .split(",")
            .filter(
              (o) =>
                !["rw", "ro"].includes(o) &&
                !o.startsWith("release_agent=") &&
                !["clone_children", "noprefix", "xattr", "cpuset_v2_mode", "favordynmods"].includes(o),
            )
            .sort()
        : [];
    return [{ mountPoint: unescapeMountField(f[4]), root: unescapeMountField(f[3]), version: fstype === "cgroup" ? 1 : 2, controllers }];
  });
}

/** LXC's cgroup names for a container: its payload (the node's processes) and its monitor. */
const lxcNames = (container: string) => [`lxc.payload.${container}`, `lxc.monitor.${container}`];

/**
 * LXC's cgroups of `container` wherever they are: a search of every mounted cgroup tree, v1 and v2,
 * at any depth (LXC nests them under its own cgroup when it does not start at the root). Throws when
 * there is nothing to search (no cgroup filesystem mounted) or a tree cannot be read: a check that
 * cannot look must not pass as "nothing left".
 */
export function findContainerCgroups(container: string, mountinfo = fs.readFileSync("/proc/self/mountinfo", "utf8")): string[] {
  const mounts = cgroupMounts(mountinfo);
  if (!mounts.length) throw new Error("no cgroup filesystem is mounted (/proc/self/mountinfo): cannot look for the container's cgroups");
  const names = lxcNames(container);
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      const sub = path.join(dir, e.name);
      if (names.includes(e.name)) found.push(sub);
      else walk(sub);
    }
  };
  // One tree may be mounted twice (a bind mount); each directory is searched once.
  for (const mountPoint of new Set(mounts.map((m) => m.mountPoint))) {
    try {
      walk(mountPoint);
    } catch (err) {
      throw new Error(`cannot read the cgroup tree at ${mountPoint}: ${(err as Error).message}`);
    }
  }
  return [...new Set(found)].sort();
}

/**
 * The cgroup directories a process is in, from its /proc/<pid>/cgroup text ("id:controllers:path"
 * lines; v2's is "0::path") and the mounts that show each hierarchy.
 */
export function cgroupDirsOf(procCgroup: string, mounts: CgroupMount[]): string[] {
  return procCgroup
    .split("\n")
    .filter(Boolean)
    .flatMap((line) => {
      const [, list, cgroup] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
      if (cgroup === undefined) return [];
      const controllers = list.split(",").filter(Boolean).sort();
      const mount = mounts.find((m) => (controllers.length ? m.version === 1 && m.controllers.join() === controllers.join() : m.version === 2));
      if (!mount || !(cgroup === mount.root || cgroup.startsWith(mount.root === "/" ? "/" : `${mount.root}/`))) return [];
      const rel = cgroup.slice(mount.root === "/" ? 0 : mount.root.length).replace(/^\/+/, "");
      return [rel ? path.join(mount.mountPoint, rel) : mount.mountPoint];
    });
}

/** The dirs of `inside` that no dir of `found` holds (is, or is an ancestor of). */
export const notWithin = (inside: string[], found: string[]) => inside.filter((d) => !found.some((f) => d === f || d.startsWith(`${f}/`)));

// ---------------------------------------------------------------- a node's memory

/** A container node's memory as its cgroup on the host counts it, in MiB. */
export interface NodeMemory {
  /** Anonymous memory (v1 total_rss, v2 anon): the node's processes. */
  rssMiB: number;
  /** Page cache (v1 total_cache, v2 file). */
  cacheMiB: number;
  /** The cgroup's limit (v1 memory.limit_in_bytes, v2 memory.max); Infinity when unlimited. */
  limitMiB: number;
}

const MiB = 1024 * 1024;

/** The figures from a memory cgroup's memory.stat and limit file, v1 or v2; NaN for a figure the text lacks. */
export function parseNodeMemory(stat: string, limit: string): NodeMemory {
  const value = (...keys: string[]) => {
    for (const k of keys) {
      const m = new RegExp(`^${k} (\\d+)$`, "m").exec(stat);
      if (m) return Number(m[1]) / MiB;
    }
    return Number.NaN;
  };
  const l = limit.trim();
  return {
    rssMiB: value("total_rss", "anon"),
    cacheMiB: value("total_cache", "file"),
    limitMiB: l === "max" ? Number.POSITIVE_INFINITY : /^\d+$/.test(l) ? Number(l) / MiB : Number.NaN,
  };
}

/** Reads a node's memory from its payload cgroup dir: whichever of the found dirs holds memory.stat. */
export function readNodeMemory(dirs: string[]): NodeMemory | undefined {
  const dir = dirs.find((d) => path.basename(d).startsWith("lxc.payload.") && fs.existsSync(path.join(d, "memory.stat")));
  if (!dir) return undefined;
  const limitFile = ["memory.limit_in_bytes", "memory.max"].map((f) => path.join(dir, f)).find((f) => fs.existsSync(f));
  return parseNodeMemory(fs.readFileSync(path.join(dir, "memory.stat"), "utf8"), limitFile ? fs.readFileSync(limitFile, "utf8") : "");
}

/**
 * What is implausible about a running node's recorded memory: its processes' memory must be a number
 * above 0 and below the limit the lab file sets, and the cgroup's limit must be that limit.
 */
export function memoryProblems(node: string, m: NodeMemory | undefined, limitMiB: number): string[] {
  if (!m) return [`${node}: no memory cgroup with a memory.stat was found`];
  const problems: string[] = [];
  if (!Number.isFinite(m.rssMiB) || m.rssMiB <= 0) problems.push(`${node}: resident memory ${m.rssMiB} MiB, not a figure above 0`);
  else if (m.rssMiB >= limitMiB) problems.push(`${node}: resident memory ${m.rssMiB.toFixed(1)} MiB, not below its limit of ${limitMiB} MiB`);
  if (!Number.isFinite(m.cacheMiB) || m.cacheMiB < 0) problems.push(`${node}: page cache ${m.cacheMiB} MiB, not a figure`);
  if (m.limitMiB !== limitMiB) problems.push(`${node}: the cgroup's limit is ${m.limitMiB} MiB, the lab file's ${limitMiB} MiB`);
  return problems;
}

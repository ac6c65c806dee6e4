// Runs a command while a VM lab's nodes are held to a CPU quota: a slower host on purpose, to show the
// probes and `up` hold on one (issue 29). Every QEMU thread of the lab goes into a cgroup of its own with
// the quota; when the command ends (or on SIGINT / SIGTERM) each goes back where it was and the cgroup is removed.
// `npm run slow-nodes -- [LAB] --cpus N -- COMMAND [ARGS...]`
import "../quiet-bash.ts";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { EXIT, exitOnSignal } from "../../core/exit.ts";
import { vmStatus } from "../machines/qemu.ts";
import { parseSoakArgs } from "./args.ts";

const PERIOD_US = 100_000;

/** Where the host keeps cgroups: the v1 cpu hierarchy, or the unified (v2) one. */
function cpuHierarchy(): { root: string; v2: boolean } {
  if (fs.existsSync("/sys/fs/cgroup/cgroup.controllers")) return { root: "/sys/fs/cgroup", v2: true };
  for (const name of ["cpu", "cpu,cpuacct"]) if (fs.existsSync(`/sys/fs/cgroup/${name}/tasks`)) return { root: `/sys/fs/cgroup/${name}`, v2: false };
  throw new Error("no cgroup cpu controller on this host (/sys/fs/cgroup/cpu or a unified hierarchy)");
}

/** A thread's (v1) or process's (v2) cgroup under the hierarchy, from /proc. */
function cgroupOf(procFile: string, v2: boolean): string {
  const lines = fs.readFileSync(procFile, "utf8").split("\n");
  const line = v2 ? lines.find((l) => l.startsWith("0::")) : lines.find((l) => l.split(":")[1]?.split(",").includes("cpu"));
  return line?.split(":").slice(2).join(":") ?? "/";
}

async function main(argv: string[]): Promise<number> {
  const dash = argv.indexOf("--");
  const command = dash < 0 ? [] : argv.slice(dash + 1);
  const parsed = parseSoakArgs(dash < 0 ? argv : argv.slice(0, dash), { cpus: "0.5" });
  const problems = parsed.ok ? [] : parsed.problems;
  if (!command.length) problems.push("a command to run after --");
  if (!parsed.ok || problems.length) {
    for (const p of problems) console.error(p);
    console.error("usage: npm run slow-nodes -- [LAB] --cpus N -- COMMAND [ARGS...]");
    return EXIT.invalid;
  }
  const { lab, numbers } = parsed.args;
  if (lab.driver.kind !== "qemu") {
    console.error(`driver.kind: ${lab.driver.kind}: only a VM lab's nodes can be slowed here (their QEMU processes)`);
    return EXIT.invalid;
  }
  const pids = lab.nodes.map((n) => ({ node: n.name, pid: vmStatus(lab.name, n.name).pid }));
  const down = pids.filter((p) => !p.pid).map((p) => p.node);
  if (down.length) {
    console.error(`${down.join(", ")}: not running (\`npx k8slab up ${lab.file}\` first)`);
    return EXIT.invalid;
  }
  const { root, v2 } = cpuHierarchy();
  const slow = path.join(root, `k8slab-slow-${lab.name}`);
  fs.mkdirSync(slow, { recursive: true });
  // v1 moves threads (each QEMU vCPU is one); v2 moves whole processes.
  const members = pids.flatMap(({ pid }) =>
    v2 ? [{ id: pid!, file: "cgroup.procs" }] : fs.readdirSync(`/proc/${pid}/task`).map((t) => ({ id: Number(t), file: "tasks" })),
  );
  const home = members.map((m) => ({ ...m, from: cgroupOf(v2 ? `/proc/${m.id}/cgroup` : `/proc/${m.id}/task/${m.id}/cgroup`, v2) }));
  const quota = Math.round(numbers.cpus * PERIOD_US);
  if (v2) fs.writeFileSync(path.join(slow, "cpu.max"), `${quota} ${PERIOD_US}`);
  else {
    fs.writeFileSync(path.join(slow, "cpu.cfs_period_us"), String(PERIOD_US));
    fs.writeFileSync(path.join(slow, "cpu.cfs_quota_us"), String(quota));
  }
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    // Threads QEMU started since (its I/O workers) are in the slow cgroup too: every one goes back.
    const now = fs
      .readFileSync(path.join(slow, v2 ? "cgroup.procs" : "tasks"), "utf8")
      .split("\n")
      .filter(Boolean)
      .map(Number);
    const from = home[0]?.from ?? "/";
    for (const id of now) {
      const where = home.find((h) => h.id === id)?.from ?? from;
      try {
        fs.writeFileSync(path.join(root, where, v2 ? "cgroup.procs" : "tasks"), String(id));
      } catch {
        // a thread that ended meanwhile
      }
    }
    fs.rmdirSync(slow);
    console.error(`slow-nodes: ${lab.name}'s nodes have the host's CPUs again`);
  };
  for (const m of members) fs.writeFileSync(path.join(slow, m.file), String(m.id));
  console.error(`slow-nodes: ${pids.map((p) => `${p.node} (qemu ${p.pid})`).join(", ")} held to ${numbers.cpus} CPU between them, in ${slow}`);
  // Its own process group: a signal reaches the command itself, not only the npm or shell in front of it.
  const child = spawn(command[0], command.slice(1), { stdio: "inherit", detached: true });
  const closed = new Promise<number>((resolve) => child.on("close", (c, s) => resolve(c ?? (s ? 128 : 1))));
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.on(signal, async () => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        // ended meanwhile
      }
      // The command stops what it runs and writes its record; the nodes stay slow until it has.
      await Promise.race([closed, new Promise((r) => setTimeout(r, 120_000))]);
      restore();
      process.exit(exitOnSignal(signal));
    });
  const code = await closed;
  restore();
  return code;
}

process.exitCode = await main(process.argv.slice(2));

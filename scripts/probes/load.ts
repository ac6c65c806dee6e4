// How busy a node is, read from its kernel: CPU pressure (PSI), the load average, and CPU time per
// process. The probes show it when a node did not run a step in time (an inconclusive tier); the
// soak and the idle measurement record it over time.
import type { Lab } from "../../core/index.ts";
import type { Exec, LabAccess } from "./types.ts";

/** PSI's "some" line for the CPU (the share of time at least one runnable task waited) and the load average, in one shell of builtins. */
export const NODE_LOAD_COMMAND = `read -r some </proc/pressure/cpu; echo "$some"; read -r l </proc/loadavg; echo "loadavg $l"`;

export interface NodeLoad {
  /** /proc/pressure/cpu "some" averages, in percent. */
  cpuSome10: number;
  cpuSome60: number;
  cpuSome300: number;
  load1: number;
  load5: number;
  load15: number;
}

/** NODE_LOAD_COMMAND's output; undefined when it does not hold both lines. */
export function parseNodeLoad(text: string): NodeLoad | undefined {
  const psi = /^some avg10=([\d.]+) avg60=([\d.]+) avg300=([\d.]+)/m.exec(text);
  const load = /^loadavg ([\d.]+) ([\d.]+) ([\d.]+)/m.exec(text);
  if (!psi || !load) return undefined;
  return { cpuSome10: +psi[1], cpuSome60: +psi[2], cpuSome300: +psi[3], load1: +load[1], load5: +load[2], load15: +load[3] };
}

/** Every node's load, read side by side: the raw read (evidence) and what it says, when it says it. */
export function readNodeLoads(lab: Lab, access: Pick<LabAccess, "onNode">, timeoutSec: number): Promise<{ node: string; read: Exec; load?: NodeLoad }[]> {
  return Promise.all(
    lab.nodes.map(async (n) => {
      const read = await access.onNode(n.name, NODE_LOAD_COMMAND, timeoutSec);
      const load = parseNodeLoad(read.stdout);
      return { node: n.name, read, ...(load ? { load } : {}) };
    }),
  );
}

export const describeLoad = (l: NodeLoad) => `CPU pressure ${l.cpuSome10}% (10 s) ${l.cpuSome60}% (60 s), load ${l.load1} ${l.load5} ${l.load15}`;

/**
 * Every process's CPU time, one /proc/<pid>/stat line each, then the node's total from /proc/stat.
 * Builtins only: a process start costs a fifth of a second on an emulated CPU.
 */
export const PROCESS_CPU_COMMAND = `for f in /proc/[0-9]*/stat; do read -r l <"$f" 2>/dev/null && echo "$l"; done; read -r c </proc/stat; echo "$c"`;

/** Clock ticks per second of /proc's CPU times (USER_HZ: 100 on every Linux/x86 build). */
const USER_HZ = 100;

export interface ProcessCpu {
  /** CPU seconds by command name: each process's own time plus its reaped children's (so short-lived helpers count for their parent). */
  byCommand: Map<string, number>;
  /** The node's busy CPU seconds (all CPUs: user, nice, system, irq, softirq, steal). */
  busy: number;
}

/** PROCESS_CPU_COMMAND's output. */
export function parseProcessCpu(text: string): ProcessCpu {
  const byCommand = new Map<string, number>();
  let busy = 0;
  for (const line of text.split("\n")) {
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split at the last ")".
    const close = line.lastIndexOf(")");
    const open = line.indexOf("(");
    if (/^\d+ \(/.test(line) && close > open) {
      const f = line.slice(close + 2).split(" ");
      // After comm: state(0) ... utime(11) stime(12) cutime(13) cstime(14).
      const ticks = +f[11] + +f[12] + +f[13] + +f[14];
      const comm = line.slice(open + 1, close);
      byCommand.set(comm, (byCommand.get(comm) ?? 0) + ticks / USER_HZ);
    } else if (line.startsWith("cpu ")) {
      const [user, nice, system, , , irq, softirq, steal] = line.split(/\s+/).slice(1).map(Number);
      busy = (user + nice + system + irq + softirq + steal) / USER_HZ;
    }
  }
  return { byCommand, busy };
}

/**
 * CPU seconds per minute between two readings, by command, busiest first. A process that exited
 * in between is missing from the second reading: its time is lost unless its parent reaped it.
 */
export function cpuPerMinute(before: ProcessCpu, after: ProcessCpu, seconds: number): { busy: number; byCommand: [string, number][] } {
  const perMin = (d: number) => Math.round((d / seconds) * 60 * 10) / 10;
  const byCommand = [...after.byCommand]
    .map(([comm, t]) => [comm, perMin(Math.max(0, t - (before.byCommand.get(comm) ?? 0)))] as [string, number])
    .filter(([, t]) => t > 0)
    .sort((a, b) => b[1] - a[1]);
  return { busy: perMin(after.busy - before.busy), byCommand };
}

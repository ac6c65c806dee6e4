// Where an idle lab's CPU goes: per node, CPU seconds per minute by process over a window, and the
// CPU pressure and load sampled through it. `npm run measure:idle -- [LAB] [--minutes N] [--out FILE]`.
import "../quiet-bash.ts";
import path from "node:path";
import { EXIT } from "../../core/exit.ts";
import type { Lab } from "../../core/index.ts";
import { type LiveAccess, liveAccess } from "../probes/live.ts";
import { cpuPerMinute, type NodeLoad, PROCESS_CPU_COMMAND, parseProcessCpu, readNodeLoads } from "../probes/load.ts";
import { writeOutput } from "../user-file.ts";
import { soakArgs } from "./args.ts";

export interface IdleNode {
  node: string;
  /** The node's busy CPU seconds per minute (all its vCPUs together). */
  busyPerMin: number;
  /** CPU seconds per minute by process name, busiest first. */
  perMinute: Record<string, number>;
  /** CPU pressure ("some", 60 s average) over the samples, in percent. */
  cpuSome60: { mean: number; max: number };
  load1: { mean: number; max: number };
  samples: (NodeLoad & { at: string })[];
}

export interface IdleReport {
  lab: string;
  startedAt: string;
  seconds: number;
  nodes: IdleNode[];
}

const stat = (xs: number[]) => ({ mean: Math.round((xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)) * 100) / 100, max: Math.max(0, ...xs) });

/** Samples each node's load every `sampleSec` for `seconds`, and its per-process CPU at both ends. */
export async function measureIdle(lab: Lab, access: LiveAccess, seconds: number, sampleSec = 30): Promise<IdleReport> {
  const startedAt = new Date().toISOString();
  const cpuNow = () => Promise.all(lab.nodes.map(async (n) => parseProcessCpu((await access.onNode(n.name, PROCESS_CPU_COMMAND, 60)).stdout)));
  const samples = new Map(lab.nodes.map((n) => [n.name, [] as IdleNode["samples"]]));
  const sample = async () => {
    for (const { node, load } of await readNodeLoads(lab, access, 30)) if (load) samples.get(node)!.push({ at: new Date().toISOString(), ...load });
  };
  const before = await cpuNow();
  const t0 = Date.now();
  while (Date.now() - t0 < seconds * 1000) {
    await sample();
    await new Promise((r) => setTimeout(r, Math.min(sampleSec * 1000, Math.max(0, t0 + seconds * 1000 - Date.now()))));
  }
  const after = await cpuNow();
  const elapsed = (Date.now() - t0) / 1000;
  return {
    lab: lab.name,
    startedAt,
    seconds: Math.round(elapsed),
    nodes: lab.nodes.map((n, i) => {
      const cpu = cpuPerMinute(before[i], after[i], elapsed);
      const s = samples.get(n.name)!;
      return {
        node: n.name,
        busyPerMin: cpu.busy,
        perMinute: Object.fromEntries(cpu.byCommand),
        cpuSome60: stat(s.map((x) => x.cpuSome60)),
        load1: stat(s.map((x) => x.load1)),
        samples: s,
      };
    }),
  };
}

export function renderIdle(r: IdleReport, top = 12): string {
  const lines = [`lab ${r.lab}: ${r.seconds} s from ${r.startedAt}`];
  for (const n of r.nodes) {
    lines.push(
      `${n.node}: busy ${n.busyPerMin} CPU s/min; CPU pressure avg60 mean ${n.cpuSome60.mean}% max ${n.cpuSome60.max}%; load1 mean ${n.load1.mean} max ${n.load1.max}`,
    );
    for (const [comm, t] of Object.entries(n.perMinute).slice(0, top)) lines.push(`  ${comm.padEnd(24)} ${t.toFixed(1).padStart(6)} s/min`);
  }
  return `${lines.join("\n")}\n`;
}

async function main(argv: string[]): Promise<number> {
  const args = soakArgs(argv, { minutes: "10" });
  if (!args) return EXIT.invalid;
  const access = liveAccess(args.lab);
  try {
    const report = await measureIdle(args.lab, access, args.numbers.minutes * 60);
    process.stdout.write(renderIdle(report));
    if (args.out) writeOutput(args.out, `${JSON.stringify(report, null, 2)}\n`, "--out");
    return EXIT.ok;
  } finally {
    await access.close();
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) process.exitCode = await main(process.argv.slice(2));

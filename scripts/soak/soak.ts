// The soak: a lab that is up, left alone for hours, must stay healthy. Every `--every` minutes a full
// probe run (all tiers must pass); every 30 s both nodes must be Ready, kubectl's answer time is
// recorded (p95 <= 2 s), and each node's CPU pressure and load; at the end a second `up` must change
// nothing. Writes a JSON record; exit 0 only when all of it held.
// `npm run soak -- [LAB] [--hours 2] [--every 5] [--out FILE]` (root; the lab must be up).
import "../quiet-bash.ts";
import fs from "node:fs";
import path from "node:path";
import { $ } from "zx";
import { EXIT } from "../../core/exit.ts";
import type { Lab } from "../../core/index.ts";
import { labPaths } from "../../core/paths.ts";
import { probeLab } from "../probes/command.ts";
import { liveAccess } from "../probes/live.ts";
import { type NodeLoad, readNodeLoads } from "../probes/load.ts";
import { bundleBinDir, logDir } from "../toolchain/paths.ts";
import { writeOutput } from "../user-file.ts";
import { soakArgs } from "./args.ts";
import { changedNothing, fileStamp, runK8slab, upChanges } from "./k8slab-run.ts";

/** How often the nodes' readiness, kubectl's answer time and the nodes' load are sampled. */
const SAMPLE_SEC = 30;
/** One "name<TAB>Ready status" row per node (kubectl's jsonpath reads the \t and \n escapes itself). */
const NODE_READY_ROWS = 'jsonpath={range .items[*]}{.metadata.name}{"\\t"}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}';
/** kubectl from the host must answer within this, at the 95th percentile. */
const KUBECTL_P95_SEC = 2;

export interface SoakRecord {
  lab: string;
  startedAt: string;
  hours: number;
  everyMinutes: number;
  probes: { at: string; seconds: number; ok: boolean; verdicts: Record<string, string> }[];
  /** Per node: CPU pressure and load, every SAMPLE_SEC. */
  nodes: Record<string, (Pick<NodeLoad, "cpuSome10" | "cpuSome60" | "load1"> & { at: string })[]>;
  kubectl: { samples: number; failed: number; p50: number; p95: number; max: number };
  /** Samples where a node was not Ready (or kubectl could not say). */
  notReady: { at: string; nodes: string }[];
  secondUp?: { exitCode: number; seconds: number; changes: string };
  /** Why the soak failed; empty when it passed. */
  failures: string[];
}

export const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : 0;
};
const round = (x: number) => Math.round(x * 100) / 100;

export async function soak(lab: Lab, opts: { hours: number; everyMinutes: number; say: (line: string) => void; out: string }): Promise<SoakRecord> {
  const rec: SoakRecord = {
    lab: lab.name,
    startedAt: new Date().toISOString(),
    hours: opts.hours,
    everyMinutes: opts.everyMinutes,
    probes: [],
    nodes: Object.fromEntries(lab.nodes.map((n) => [n.name, []])),
    kubectl: { samples: 0, failed: 0, p50: 0, p95: 0, max: 0 },
    notReady: [],
    failures: [],
  };
  const save = () => writeOutput(opts.out, `${JSON.stringify(rec, null, 2)}\n`, "--out");
  const kubectlSeconds: number[] = [];
  const access = liveAccess(lab);
  const end = Date.now() + opts.hours * 3600_000;

  const sample = async () => {
    const at = new Date().toISOString();
    const started = Date.now();
    const r = await $({
      nothrow: true,
      quiet: true,
    })`${bundleBinDir()}/kubectl --kubeconfig=${labPaths(lab.name).adminKubeconfig} --request-timeout=10s get nodes -o ${NODE_READY_ROWS}`;
    kubectlSeconds.push((Date.now() - started) / 1000);
    if (r.exitCode !== 0) rec.kubectl.failed++;
    const ready = new Map(
      r.stdout
        .trim()
        .split("\n")
        .map((l) => l.split("\t") as [string, string]),
    );
    const notReady = lab.nodes
      .filter((n) => ready.get(n.name) !== "True")
      .map((n) => `${n.name} ${ready.get(n.name) ?? (r.exitCode ? `unknown: ${r.stderr.trim().split("\n").pop()}` : "missing")}`);
    if (notReady.length) rec.notReady.push({ at, nodes: notReady.join(", ") });
    for (const { node, load } of await readNodeLoads(lab, access, SAMPLE_SEC)) {
      if (load) rec.nodes[node].push({ at, cpuSome10: load.cpuSome10, cpuSome60: load.cpuSome60, load1: load.load1 });
    }
  };

  try {
    let nextProbe = Date.now();
    while (Date.now() < end) {
      if (Date.now() >= nextProbe) {
        nextProbe += opts.everyMinutes * 60_000;
        const started = Date.now();
        const report = await probeLab(lab);
        const run = {
          at: report.startedAt,
          seconds: round((Date.now() - started) / 1000),
          ok: report.ok,
          verdicts: Object.fromEntries(report.results.map((r) => [r.tier, r.verdict])),
        };
        rec.probes.push(run);
        opts.say(
          `probe ${rec.probes.length}: ${
            run.ok
              ? "all pass"
              : Object.entries(run.verdicts)
                  .filter(([, v]) => v !== "pass")
                  .map(([t, v]) => `${t} ${v}`)
                  .join(", ")
          } in ${run.seconds} s`,
        );
      }
      await sample();
      save();
      const wait = Math.min(SAMPLE_SEC * 1000, Math.max(0, Math.min(end, nextProbe) - Date.now()));
      await new Promise((r) => setTimeout(r, wait));
    }
  } finally {
    await access.close();
  }

  // The lab after hours of use must still be Pulumi's lab: `up` refreshes and finds nothing to change.
  const up = await runK8slab(["up", lab.file]);
  const changes = upChanges(up.stderr, lab.name) ?? "(no summary)";
  rec.secondUp = { exitCode: up.exitCode, seconds: up.seconds, changes };

  rec.kubectl = {
    samples: kubectlSeconds.length,
    failed: rec.kubectl.failed,
    p50: round(percentile(kubectlSeconds, 50)),
    p95: round(percentile(kubectlSeconds, 95)),
    max: round(Math.max(0, ...kubectlSeconds)),
  };
  const notPassed = rec.probes.filter((p) => !p.ok);
  if (!rec.probes.length) rec.failures.push("no probe run");
  if (notPassed.length) rec.failures.push(`${notPassed.length} of ${rec.probes.length} probe runs did not pass`);
  if (rec.notReady.length) rec.failures.push(`a node was not Ready in ${rec.notReady.length} samples (first ${rec.notReady[0].at}: ${rec.notReady[0].nodes})`);
  if (rec.kubectl.failed) rec.failures.push(`kubectl failed ${rec.kubectl.failed} of ${rec.kubectl.samples} times`);
  if (rec.kubectl.p95 > KUBECTL_P95_SEC) rec.failures.push(`kubectl p95 ${rec.kubectl.p95} s > ${KUBECTL_P95_SEC} s`);
  if (up.exitCode !== 0) rec.failures.push(`the second up failed (exit ${up.exitCode}): ${up.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  else if (!changedNothing(changes)) rec.failures.push(`the second up changed something: ${changes}`);
  save();
  return rec;
}

async function main(argv: string[]): Promise<number> {
  const args = soakArgs(argv, { hours: "2", every: "5" });
  if (!args) return EXIT.invalid;
  const { lab } = args;
  const { hours, every: everyMinutes } = args.numbers;
  const out = args.out ?? path.join(logDir(), `soak-${lab.name}-${fileStamp()}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const say = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
  say(`soak of lab ${lab.name}: ${hours} h, a probe run every ${everyMinutes} min; record in ${out}`);
  const rec = await soak(lab, { hours, everyMinutes, say, out });
  const load = Object.entries(rec.nodes)
    .map(([n, s]) => `${n} CPU pressure avg60 max ${Math.max(0, ...s.map((x) => x.cpuSome60))}%`)
    .join(", ");
  say(
    `${rec.probes.filter((p) => p.ok).length}/${rec.probes.length} probe runs passed; kubectl p50 ${rec.kubectl.p50} s p95 ${rec.kubectl.p95} s; ${load}; second up: ${rec.secondUp?.changes}`,
  );
  say(rec.failures.length ? `FAILED: ${rec.failures.join("; ")}` : "passed");
  return rec.failures.length ? EXIT.failed : EXIT.ok;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) process.exitCode = await main(process.argv.slice(2));

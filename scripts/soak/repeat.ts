// The repeat harness: a lab's whole life, N times over, to measure how often it fails. A cycle is
// `down` (only when the lab exists), `up` from nothing, `probe --json`, every form of `trace`, a second
// `up` that must change nothing, `down`; each phase's exit code, seconds and verdict go to a JSON
// record, rewritten after every phase. A failed phase's whole output and the lab's logs are kept in
// ~/.cache/k8slab/logs/repeat-<stamp>/, then the cycle goes on with its `down` and the next cycle
// starts. With --fresh-cache ARCHIVE every cycle starts from an empty cache (K8SLAB_CACHE): the
// toolchain imported from ARCHIVE (a timed phase), then `up` makes the rest and Pulumi's state.
// SIGINT or SIGTERM stops the running k8slab, runs `down`, writes the record and exits 130 or 143.
// `npm run repeat -- [LAB] [--cycles N] [--phases up,probe,trace,second-up,down] [--fresh-cache ARCHIVE] [--out FILE]`
import "../quiet-bash.ts";
import fs from "node:fs";
import path from "node:path";
import { EXIT, exitOnSignal } from "../../core/exit.ts";
import type { Lab } from "../../core/index.ts";
import { CLUSTER_DNS, TOOLBOX } from "../../core/names.ts";
import { labPaths } from "../../core/paths.ts";
import { netnsExists } from "../machines/labnet.ts";
import type { ProbeReport } from "../probes/types.ts";
import { cacheRoot, logDir } from "../toolchain/paths.ts";
import type { TraceReport } from "../trace/run.ts";
import { writeOutput } from "../user-file.ts";
import { parseSoakArgs } from "./args.ts";
import { changedNothing, fileStamp, type K8slabRun, type RunningK8slab, startK8slab, stepSeconds, upChanges } from "./k8slab-run.ts";

/** The phases a cycle may have, in the order a cycle runs them. */
export const PHASES = ["up", "probe", "trace", "second-up", "down"] as const;
export type PhaseKind = (typeof PHASES)[number];

export const USAGE = `usage: npm run repeat -- [LAB] [--cycles N] [--phases ${PHASES.join(",")}] [--fresh-cache ARCHIVE] [--out FILE]

Runs a lab's life N times and records each phase's exit code, seconds and verdict as JSON.
A cycle: down (only if the lab exists), up from nothing, probe --json, each trace form
(pod to pod, ClusterIP, NodePort, ingress, DNS over UDP, pod to node), a second up that must
change nothing, down. A failed phase keeps its whole output and the lab's logs in
~/.cache/k8slab/logs/repeat-<stamp>/ and ends its cycle with down; the next cycle starts.

  LAB                   the lab file (default labs/two-node.yaml)
  --cycles N            how many cycles (default 1)
  --phases LIST         only these phases, in the order above (default all); without up, the
                        cycles run on the lab as it is and never take it down first
  --fresh-cache ARCHIVE each cycle on an empty K8SLAB_CACHE: \`k8slab toolchain --import ARCHIVE\`
                        (a timed phase), then up makes the rest and Pulumi's state from nothing;
                        the cache is removed after the cycle (needs the up and down phases)
  --out FILE            the JSON record (default: the run's log folder)

Exit 0 only when every phase of every cycle passed; 1 when one failed; 2 for bad input;
130 or 143 after SIGINT or SIGTERM (the running k8slab stopped, the lab taken down, the record written).
`;

export interface RepeatOptions {
  lab: Lab;
  cycles: number;
  phases: PhaseKind[];
  /** The toolchain archive each cycle's empty cache imports. */
  freshCache?: string;
  out?: string;
}

/** The command line, or --help, or every problem with it (the caller prints them and exits 2). */
export function parseRepeatArgs(argv: string[]): { help: true } | { ok: true; opts: RepeatOptions } | { ok: false; problems: string[] } {
  if (argv.includes("--help") || argv.includes("-h")) return { help: true };
  const parsed = parseSoakArgs(argv, { cycles: "1" }, ["cycles"], ["phases", "fresh-cache"]);
  const problems = parsed.ok ? [] : [...parsed.problems];
  const strings = parsed.ok ? parsed.args.strings : parsed.strings;
  const given = (strings.phases ?? PHASES.join(","))
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  const unknown = given.filter((p) => !(PHASES as readonly string[]).includes(p));
  if (unknown.length) problems.push(`--phases: ${unknown.map((p) => `"${p}"`).join(", ")} not a phase (${PHASES.join(", ")})`);
  else if (!given.length) problems.push(`--phases: at least one of ${PHASES.join(", ")}`);
  const phases = PHASES.filter((p) => given.includes(p));
  const archive = strings["fresh-cache"];
  if (archive !== undefined) {
    if (!fs.statSync(archive, { throwIfNoEntry: false })?.isFile()) problems.push(`--fresh-cache: no file ${archive}`);
    const missing = (["up", "down"] as const).filter((p) => !phases.includes(p));
    if (missing.length)
      problems.push(
        `--fresh-cache: needs the ${missing.join(" and ")} phase${missing.length > 1 ? "s" : ""} (the lab is made from the fresh cache and gone before the cache is)`,
      );
  }
  if (!parsed.ok || problems.length) return { ok: false, problems };
  return {
    ok: true,
    opts: {
      lab: parsed.args.lab,
      cycles: parsed.args.numbers.cycles,
      phases,
      ...(archive !== undefined ? { freshCache: path.resolve(archive) } : {}),
      ...(parsed.args.out !== undefined ? { out: path.resolve(parsed.args.out) } : {}),
    },
  };
}

/** One `k8slab trace` per form: FROM and TO in the lab's own names (docs/trace.md). */
export interface TraceForm {
  name: string;
  from: string;
  to: string;
}
export function traceForms(lab: Lab): TraceForm[] {
  const toolbox = TOOLBOX.daemonSet;
  const last = lab.nodes.at(-1)!.name;
  return [
    // The toolbox DaemonSet has a pod on each node: its first two are on two nodes.
    ...(lab.nodes.length > 1 ? [{ name: "pod-to-pod", from: `${toolbox}/0`, to: `${toolbox}/1` }] : []),
    { name: "clusterip", from: toolbox, to: `svc/${lab.workloads.businessManager.name}` },
    { name: "nodeport", from: "client", to: `nodeport/${last}` },
    { name: "ingress", from: "client", to: "ingress" },
    { name: "dns", from: toolbox, to: `svc/${CLUSTER_DNS.service}` },
    { name: "pod-to-node", from: `${toolbox}/0`, to: `node/${last}` },
  ];
}

/** One phase of a cycle as planned: the k8slab arguments, and whether it runs on the cycle's fresh cache. */
export interface PlannedPhase {
  name: string;
  kind: PhaseKind | "clean-down" | "import";
  args: string[];
  fresh: boolean;
}

/** A cycle's phases, in order. `labExists`: the lab is there before the cycle (then `up` starts with a `down`). */
export function cyclePlan(opts: Pick<RepeatOptions, "lab" | "phases" | "freshCache">, labExists: boolean): PlannedPhase[] {
  const file = path.resolve(opts.lab.file);
  const has = (k: PhaseKind) => opts.phases.includes(k);
  const fresh = opts.freshCache !== undefined;
  const plan: PlannedPhase[] = [];
  // The lab that is there was made with the cache `up` uses outside this harness.
  if (has("up") && labExists) plan.push({ name: "clean-down", kind: "clean-down", args: ["down", file], fresh: false });
  if (opts.freshCache) plan.push({ name: "import", kind: "import", args: ["toolchain", "--import", opts.freshCache], fresh });
  if (has("up")) plan.push({ name: "up", kind: "up", args: ["up", file], fresh });
  if (has("probe")) plan.push({ name: "probe", kind: "probe", args: ["probe", file, "--json"], fresh });
  if (has("trace"))
    for (const t of traceForms(opts.lab)) plan.push({ name: `trace ${t.name}`, kind: "trace", args: ["trace", file, t.from, t.to, "--json"], fresh });
  if (has("second-up")) plan.push({ name: "second-up", kind: "second-up", args: ["up", file], fresh });
  if (has("down")) plan.push({ name: "down", kind: "down", args: ["down", file], fresh });
  return plan;
}

/** What of the lab is on this host: its state folder, its run folder, its network namespace. */
export function labLeftovers(lab: Lab): string[] {
  const l = labPaths(lab.name);
  return [fs.existsSync(l.dir) ? `state ${l.dir}` : "", fs.existsSync(l.run) ? `run ${l.run}` : "", netnsExists(lab.netns) ? `netns ${lab.netns}` : ""].filter(
    Boolean,
  );
}

export interface ProbeVerdict {
  ok: boolean;
  /** Each tier's verdict. */
  tiers: Record<string, string>;
  /** The tiers that neither passed nor were skipped, each with its first broken hop or why. */
  notPassed: string[];
  /** Each node's measured process start (ms) and the factor the deadlines were stretched by: how slow the run was. */
  pace?: { node: string; processStartMs?: number; factor: number }[];
}
export interface TraceVerdict {
  ok: boolean;
  from: string;
  to: string;
  proto: string;
  /** Capture points that saw the request and its reply, of all the points on the path. */
  seen: number;
  points: number;
  lost?: string;
  /** The sender's own command, when it failed. */
  sent?: string;
}

/** A probe run's tiers that neither passed nor were skipped: "flannel fail: <first broken hop>". */
export function notPassed(report: Pick<ProbeReport, "results">): string[] {
  return report.results
    .filter((r) => r.verdict !== "pass" && r.verdict !== "skipped")
    .map((r) => `${r.tier} ${r.verdict}${r.firstBrokenHop ? `: ${r.firstBrokenHop}` : r.reason ? `: ${r.reason}` : r.blockedBy ? ` by ${r.blockedBy}` : ""}`);
}

const unparsed = (what: string, stdout: string) => ({
  error: `no ${what} JSON on stdout${stdout.trim() ? ` (it begins "${stdout.trim().slice(0, 60)}")` : " (empty)"}`,
});

/** `k8slab probe --json`'s verdicts. */
export function probeVerdict(stdout: string): ProbeVerdict | { error: string } {
  let report: ProbeReport;
  try {
    report = JSON.parse(stdout);
  } catch {
    return unparsed("probe report", stdout);
  }
  if (!Array.isArray(report?.results)) return unparsed("probe report", stdout);
  return {
    ok: report.ok === true,
    tiers: Object.fromEntries(report.results.map((r) => [r.tier, r.verdict])),
    notPassed: notPassed(report),
    ...(report.pace ? { pace: report.pace } : {}),
  };
}

/** `k8slab trace --json`'s verdict: whether every point saw the request and its reply, and where it was lost. */
export function traceVerdict(stdout: string): TraceVerdict | { error: string } {
  let report: Omit<TraceReport, "captured">;
  try {
    report = JSON.parse(stdout);
  } catch {
    return unparsed("trace report", stdout);
  }
  if (!Array.isArray(report?.legs)) return unparsed("trace report", stdout);
  const points = report.legs.flatMap((l) => l.points);
  return {
    ok: report.ok === true,
    from: report.from,
    to: report.to,
    proto: report.proto,
    seen: points.filter((p) => p.verdict === "seen").length,
    points: points.length,
    ...(report.lost ? { lost: `after ${report.lost.after}, before ${report.lost.before}` } : {}),
    ...(report.sent && report.sent.exitCode !== 0 ? { sent: `${report.sent.where}: exit ${report.sent.exitCode}` } : {}),
  };
}

export interface PhaseRecord {
  name: string;
  command: string;
  startedAt: string;
  seconds: number;
  exitCode: number;
  ok: boolean;
  /** Why it did not pass, in one line. */
  reason?: string;
  /** Stopped by the harness's own SIGINT or SIGTERM: not counted as a failure. */
  interrupted?: NodeJS.Signals;
  /** `up`'s steps and their seconds. */
  steps?: Record<string, number>;
  /** `up`'s summary of what Pulumi changed. */
  changes?: string;
  verdict?: ProbeVerdict | TraceVerdict | { error: string };
  /** A failed phase: the file with its whole output (stdout and stderr as they came). */
  output?: string;
  /** A failed phase: the folder the lab's logs were copied to. */
  logs?: string;
}

/** The line of a failed run that says why: its first "✗" line, else its last line on stderr. */
function whyFailed(run: K8slabRun): string {
  const lines = run.stderr.split("\n").filter((l) => l.trim());
  const line = lines.find((l) => l.startsWith("✗")) ?? lines.at(-1) ?? "(no output)";
  return line.length > 300 ? `${line.slice(0, 300)}...` : line;
}

/** A phase's record from its run: passed or not, and why. `leftovers`: what of the lab a `down` left. */
export function judgePhase(step: PlannedPhase, run: K8slabRun, labName: string, leftovers: string[] = []): PhaseRecord {
  const rec: PhaseRecord = {
    name: step.name,
    command: `k8slab ${run.args.join(" ")}`,
    startedAt: run.startedAt,
    seconds: run.seconds,
    exitCode: run.exitCode,
    ok: false,
  };
  const reasons: string[] = [];
  const exited = `exit ${run.exitCode}${run.signal ? ` (${run.signal})` : ""}`;
  switch (step.kind) {
    case "up":
    case "second-up": {
      rec.steps = stepSeconds(run.stderr);
      const changes = upChanges(run.stderr, labName);
      if (changes) rec.changes = changes;
      if (run.exitCode !== 0) reasons.push(`${exited}: ${whyFailed(run)}`);
      else if (step.kind === "second-up" && !changedNothing(changes)) reasons.push(`changed something: ${changes ?? "(no summary line)"}`);
      break;
    }
    case "probe": {
      const v = probeVerdict(run.stdout);
      rec.verdict = v;
      if ("error" in v) reasons.push(`${exited}: ${run.exitCode === 0 ? v.error : whyFailed(run)}`);
      else if (run.exitCode !== 0 || !v.ok) {
        // The tiers that failed say why; those blocked by them only that they were.
        const blocked = v.notPassed.filter((t) => / blocked( |$)/.test(t)).length;
        const own = v.notPassed.filter((t) => !/ blocked( |$)/.test(t));
        reasons.push(`${exited}: ${[...own, ...(blocked ? [`${blocked} tier(s) blocked`] : [])].join("; ") || whyFailed(run)}`);
      }
      break;
    }
    case "trace": {
      const v = traceVerdict(run.stdout);
      rec.verdict = v;
      if ("error" in v) reasons.push(`${exited}: ${run.exitCode === 0 ? v.error : whyFailed(run)}`);
      else if (run.exitCode !== 0 || !v.ok)
        reasons.push(`${exited}: ${v.seen}/${v.points} points saw it${v.lost ? `; lost ${v.lost}` : ""}${v.sent ? `; the sender: ${v.sent}` : ""}`);
      break;
    }
    default:
      if (run.exitCode !== 0) reasons.push(`${exited}: ${whyFailed(run)}`);
  }
  if ((step.kind === "down" || step.kind === "clean-down") && leftovers.length) reasons.push(`left behind: ${leftovers.join(", ")}`);
  rec.ok = reasons.length === 0;
  if (!rec.ok) rec.reason = reasons.join("; ");
  return rec;
}

export interface CycleRecord {
  cycle: number;
  startedAt: string;
  /** Set when the cycle has ended. */
  seconds?: number;
  /** Every phase so far passed. */
  ok: boolean;
  done: boolean;
  /** The cycle's own cache (--fresh-cache), removed after it. */
  cache?: string;
  phases: PhaseRecord[];
  /** Phases not run because one before them failed (or the harness was stopped). */
  skipped: string[];
}

export interface Stats {
  runs: number;
  /** Of the runs that passed. */
  min: number;
  median: number;
  max: number;
}

export interface Summary {
  /** Cycles started. */
  cycles: number;
  passed: number;
  /** Cycles with a failed phase. */
  failed: number;
  /** Cycles stopped by the harness's signal (or a killed harness) before their end, with no failure. */
  unfinished: number;
  /** Failed phases by name (interrupted ones not counted), every phase run or skipped named. */
  failures: Record<string, number>;
  /** Phases not run (after a failure in their cycle, or the harness stopped), by name. */
  skipped: Record<string, number>;
  /** Seconds by phase, over the runs that passed. */
  seconds: Record<string, Stats>;
}

const round1 = (x: number) => Math.round(x * 10) / 10;

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return 0;
  const mid = Math.floor(s.length / 2);
  return round1(s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2);
}

export function summarize(cycles: CycleRecord[]): Summary {
  const failures: Record<string, number> = {};
  const skipped: Record<string, number> = {};
  const passedSeconds: Record<string, number[]> = {};
  for (const c of cycles) {
    for (const p of c.phases) {
      failures[p.name] ??= 0;
      passedSeconds[p.name] ??= [];
      if (p.ok) passedSeconds[p.name].push(p.seconds);
      else if (!p.interrupted) failures[p.name]++;
    }
    for (const name of c.skipped) {
      failures[name] ??= 0;
      skipped[name] = (skipped[name] ?? 0) + 1;
    }
  }
  const failedCycle = (c: CycleRecord) => c.phases.some((p) => !p.ok && !p.interrupted);
  const failed = cycles.filter(failedCycle).length;
  const passed = cycles.filter((c) => c.done && c.ok && !failedCycle(c)).length;
  return {
    cycles: cycles.length,
    passed,
    failed,
    unfinished: cycles.length - passed - failed,
    failures,
    skipped,
    seconds: Object.fromEntries(
      Object.entries(passedSeconds)
        .filter(([, xs]) => xs.length)
        .map(([name, xs]) => [name, { runs: xs.length, min: Math.min(...xs), median: median(xs), max: Math.max(...xs) }]),
    ),
  };
}

export interface RepeatRecord {
  lab: string;
  labFile: string;
  driver: string;
  argv: string[];
  startedAt: string;
  endedAt?: string;
  cyclesPlanned: number;
  phases: PhaseKind[];
  /** The toolchain archive each cycle's fresh cache imported. */
  freshCache?: string;
  /** The run's folder: each failed phase's output and logs. */
  logs: string;
  /** The signal that stopped the harness. */
  interrupted?: NodeJS.Signals;
  summary: Summary;
  cycles: CycleRecord[];
}

/** The record a run starts with: what it is asked to do, no cycle yet. */
export function newRecord(opts: RepeatOptions, argv: string[], runDir: string): RepeatRecord {
  return {
    lab: opts.lab.name,
    labFile: path.resolve(opts.lab.file),
    driver: opts.lab.driver.kind,
    argv,
    startedAt: new Date().toISOString(),
    cyclesPlanned: opts.cycles,
    phases: opts.phases,
    ...(opts.freshCache ? { freshCache: opts.freshCache } : {}),
    logs: runDir,
    summary: summarize([]),
    cycles: [],
  };
}

const say = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
const slug = (s: string) => s.replace(/[^A-Za-z0-9.-]+/g, "-");

/** Copies the regular files directly in `from` (those changed since `since`, if given) into `to`; how many. */
function copyFiles(from: string, to: string, since?: number): number {
  if (!fs.existsSync(from)) return 0;
  let n = 0;
  for (const f of fs.readdirSync(from, { withFileTypes: true })) {
    const file = path.join(from, f.name);
    if (!f.isFile() || (since !== undefined && fs.statSync(file).mtimeMs < since)) continue;
    fs.mkdirSync(to, { recursive: true });
    fs.copyFileSync(file, path.join(to, f.name));
    n++;
  }
  return n;
}

/**
 * A failed phase's evidence, in its own folder: the whole output, the lab's logs folder (the machines'
 * consoles, LXC's logs, the forwards'), and the cache's logs (image builds...) written during the phase.
 * Done before the `down` that removes the lab's folder.
 */
function keepFailure(dir: string, phase: PhaseRecord, run: K8slabRun, lab: Lab, cacheLogs: { dir: string; since?: number }): void {
  fs.mkdirSync(dir, { recursive: true });
  phase.output = path.join(dir, "output.log");
  fs.writeFileSync(phase.output, `$ ${phase.command}\n# started ${run.startedAt}, exit ${run.exitCode} after ${run.seconds} s\n\n${run.output}`);
  phase.logs = dir;
  try {
    const labLogs = labPaths(lab.name).logs;
    if (fs.existsSync(labLogs)) fs.cpSync(labLogs, path.join(dir, "lab-logs"), { recursive: true });
    copyFiles(cacheLogs.dir, path.join(dir, "cache-logs"), cacheLogs.since);
  } catch (err) {
    fs.writeFileSync(path.join(dir, "copy-error.txt"), `${(err as Error).message}\n`);
  }
}

/** Seconds a second SIGINT must come after the first to mean "stop at once" (npm and tsx pass a Ctrl-C on too). */
const SAME_KEYPRESS_MS = 2000;

async function main(argv: string[]): Promise<number> {
  const parsed = parseRepeatArgs(argv);
  if ("help" in parsed) {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (!parsed.ok) {
    for (const p of parsed.problems) console.error(p);
    console.error(USAGE.split("\n")[0]);
    return EXIT.invalid;
  }
  const opts = parsed.opts;
  const { lab } = opts;
  const stamp = fileStamp();
  const runDir = path.join(logDir(), `repeat-${stamp}`);
  const out = opts.out ?? path.join(runDir, `repeat-${lab.name}.json`);
  const freshRoot = `${cacheRoot()}-repeat-${stamp}`;
  const record = newRecord(opts, argv, runDir);
  const save = () => {
    record.summary = summarize(record.cycles);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    writeOutput(out, `${JSON.stringify(record, null, 2)}\n`, "--out");
  };
  save();

  let current: RunningK8slab | undefined;
  // Set by the signal handler; read through stopSignal(), which type narrowing does not see through.
  let stopping: { signal: NodeJS.Signals; at: number } | undefined;
  const stopSignal = (): NodeJS.Signals | undefined => stopping?.signal;
  let cleaning = false;
  /** The cycles make the lab (and take it down): a signal takes it down too. Without `up` they only use it. */
  const ownsLab = opts.phases.includes("up");
  const onSignal = (signal: NodeJS.Signals) => {
    if (!stopping) {
      stopping = { signal, at: Date.now() };
      record.interrupted = signal;
      say(
        `${signal}: stopping${current ? " the running k8slab" : ""}, then${ownsLab ? ` down of lab ${lab.name},` : ""} the record, exit ${exitOnSignal(signal)} (again: stop k8slab at once)`,
      );
      void current?.stop(signal);
    } else if (Date.now() - stopping.at < SAME_KEYPRESS_MS) {
      /* the same Ctrl-C, passed on by npm or tsx */
    } else if (cleaning) say(`${signal}: the lab's down is running; the harness ends after it`);
    else {
      say(`${signal}: stopping k8slab at once`);
      current?.kill();
    }
  };
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const s of signals) process.on(s, onSignal);

  /** Runs one phase: the record, and on failure its evidence. */
  const runPhase = async (cycle: CycleRecord, step: PlannedPhase, env: NodeJS.ProcessEnv): Promise<PhaseRecord> => {
    const stoppedBefore = stopSignal() !== undefined;
    const started = Date.now();
    current = startK8slab(step.args, { env });
    const run = await current.done;
    current = undefined;
    const phase = judgePhase(step, run, lab.name, step.kind === "down" || step.kind === "clean-down" ? labLeftovers(lab) : []);
    const signal = stopSignal();
    if (!stoppedBefore && signal) {
      phase.interrupted = signal;
      phase.ok = false;
      phase.reason = `interrupted (${signal})${phase.reason ? `; ${phase.reason}` : ""}`;
    }
    cycle.phases.push(phase);
    if (!phase.ok) {
      cycle.ok = false;
      const cacheLogs = step.fresh ? { dir: path.join(env.K8SLAB_CACHE!, "logs") } : { dir: logDir(), since: started - 1000 };
      keepFailure(path.join(runDir, `cycle-${String(cycle.cycle).padStart(3, "0")}-${slug(step.name)}`), phase, run, lab, cacheLogs);
    }
    save();
    const tag = `cycle ${cycle.cycle}/${opts.cycles} ${step.name}:`;
    if (phase.ok) say(`${tag} pass in ${phase.seconds} s${phase.changes ? `, ${phase.changes}` : ""}`);
    else say(`${tag} ${phase.interrupted ? "INTERRUPTED" : "FAIL"} in ${phase.seconds} s: ${phase.reason}; output and logs: ${phase.logs}`);
    return phase;
  };

  say(
    `repeat: lab ${lab.name} (${lab.driver.kind}), ${opts.cycles} cycle(s) of ${opts.phases.join(", ")}${
      opts.freshCache ? `, each on an empty cache importing ${opts.freshCache}` : ""
    }; record: ${out}`,
  );
  try {
    for (let n = 1; n <= opts.cycles && !stopSignal(); n++) {
      const began = Date.now();
      const cycle: CycleRecord = { cycle: n, startedAt: new Date(began).toISOString(), ok: true, done: false, phases: [], skipped: [] };
      record.cycles.push(cycle);
      let env: NodeJS.ProcessEnv = process.env;
      if (opts.freshCache) {
        cycle.cache = path.join(freshRoot, `cycle-${n}`);
        fs.rmSync(cycle.cache, { recursive: true, force: true });
        fs.mkdirSync(cycle.cache, { recursive: true });
        // Pulumi's state lives in the cache too (pulumiEnv) unless a backend is set: from nothing means none.
        const { PULUMI_BACKEND_URL: _, ...rest } = process.env;
        env = { ...rest, K8SLAB_CACHE: cycle.cache };
      }
      const plan = cyclePlan(opts, labLeftovers(lab).length > 0);
      let failed = false;
      let upRan = false;
      let labGone = false;
      /** The signal cut the cycle short: a phase stopped, or phases not run. */
      let cut = false;
      try {
        for (const step of plan) {
          // After a failure only `down` runs, and only when this cycle's `up` made something to take down.
          const skip = stopSignal() || (failed && step.kind !== "down") || (step.kind === "down" && ownsLab && !upRan);
          if (skip) {
            cycle.skipped.push(step.name);
            if (stopSignal()) cut = true;
            continue;
          }
          if (step.kind === "up") upRan = true;
          const phase = await runPhase(cycle, step, step.fresh ? env : process.env);
          if (phase.interrupted) cut = true;
          if (!phase.ok) failed = true;
          if (step.kind === "down" && phase.ok) labGone = true;
        }
        // Stopped by a signal: the lab this harness was making goes, as a cycle's `down` would take it
        // (with the cache its `up` used: Pulumi's stack of it is there).
        const signal = stopSignal();
        if (signal && ownsLab && !labGone && labLeftovers(lab).length) {
          cleaning = true;
          const down: PlannedPhase = {
            name: `down after ${signal}`,
            kind: "down",
            args: ["down", path.resolve(lab.file)],
            fresh: !!opts.freshCache && upRan,
          };
          await runPhase(cycle, down, down.fresh ? env : process.env);
        }
      } finally {
        if (cycle.cache) fs.rmSync(cycle.cache, { recursive: true, force: true });
      }
      cycle.done = !cut;
      cycle.seconds = Math.round((Date.now() - began) / 100) / 10;
      save();
    }
  } finally {
    for (const s of signals) process.off(s, onSignal);
    if (opts.freshCache) fs.rmSync(freshRoot, { recursive: true, force: true });
    record.endedAt = new Date().toISOString();
    save();
  }

  const s = record.summary;
  say(`${s.cycles} cycle(s): ${s.passed} passed, ${s.failed} failed${s.unfinished ? `, ${s.unfinished} unfinished` : ""}`);
  for (const [name, failures] of Object.entries(s.failures)) {
    const t = s.seconds[name];
    say(
      `  ${name}: ${failures} failed${s.skipped[name] ? `, ${s.skipped[name]} skipped` : ""}${
        t ? `; ${t.min} / ${t.median} / ${t.max} s (min / median / max of ${t.runs} passed)` : ""
      }`,
    );
  }
  say(`record: ${out}`);
  const signal = stopSignal();
  if (signal) return exitOnSignal(signal);
  return s.passed === opts.cycles && s.failed === 0 ? EXIT.ok : EXIT.failed;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) process.exitCode = await main(process.argv.slice(2));

// Runs the selected tiers side by side from the start, reads and traffic alike, and reports them bottom-up: records each tier's evidence, and reports a tier whose foundation broke as blocked.
import type { Lab } from "../../core/index.ts";
import { TIER_DEPENDENCIES, TIER_IDS, TIMEOUT, type TierId } from "./contract.ts";
import { describeLoad, readNodeLoads } from "./load.ts";
import { TIERS } from "./tiers/index.ts";
import {
  Broken,
  type ClusterReader,
  type Exec,
  type Hop,
  type LabAccess,
  NoFinding,
  type ProbeContext,
  type ProbeReport,
  paceLookup,
  type Tier,
  type TierResult,
} from "./types.ts";

export interface RunOptions {
  /** Only these tiers (default: all). Tiers not selected are neither run nor reported. */
  tiers?: readonly TierId[];
  /** Called as each tier finishes, for a progress line. */
  onResult?: (r: TierResult) => void;
  /** Each capture's packets as pcap (`probe --pcap DIR`). */
  keepPcap?: ProbeContext["keepPcap"];
  /** Overrides for tests: the tier modules, the clock, the whole-tier time limit. */
  modules?: readonly Tier[];
  now?: () => number;
  tierTimeoutSec?: number;
}

export async function runProbes(lab: Lab, access: LabAccess, opts: RunOptions = {}): Promise<ProbeReport> {
  const now = opts.now ?? Date.now;
  const started = now();
  const modules = opts.modules ?? TIERS;
  const selected = modules.filter((t) => !opts.tiers || opts.tiers.includes(t.id));
  // The nodes' pace is measured as the run starts (the live access stretches each step's deadline by it, and
  // measures each node once a run); a whole tier's limit is stretched by the slowest node's.
  const pace = access.pace?.();
  const paceOf = paceLookup(access);
  const tierLimitSec = paceOf().then((f) => (opts.tierTimeoutSec ?? TIMEOUT.tier) * f);
  // The cluster's objects do not change during a run: each kubectl read is made once and shared.
  const kubectlReads = new Map<string, Promise<Exec>>();
  // A node read made by a tier's lookups is handed to the tier's first identical call (later ones are made afresh).
  const early = new Map<string, Promise<unknown>>();
  const keep = <T>(call: unknown[], p: Promise<T>) => {
    early.set(JSON.stringify(call), p);
    return p;
  };
  // An answer that overran is no answer: the tier's retry asks again.
  const handOver = async <T extends Exec | Exec[]>(call: unknown[], make: () => Promise<T>): Promise<T> => {
    const key = JSON.stringify(call);
    const p = early.get(key) as Promise<T> | undefined;
    early.delete(key);
    const answer = p && (await p);
    return answer && !overran(answer) ? answer : make();
  };
  const shared: SharedAccess = {
    ...(opts.keepPcap ? { keepPcap: opts.keepPcap } : {}),
    paceOf,
    onNode: (node, command, t) => handOver([node, command], () => access.onNode(node, command, t)),
    onNodeSteps: (node, commands, t) => handOver([node, commands], () => access.onNodeSteps(node, commands, t)),
    inPod: access.inPod.bind(access),
    inPodSteps: access.inPodSteps.bind(access),
    fromOutsideClient: access.fromOutsideClient.bind(access),
    kubectl: (args, timeoutSec) => {
      const key = JSON.stringify(args);
      if (!kubectlReads.has(key)) {
        const read = access.kubectl(args, timeoutSec);
        kubectlReads.set(key, read);
        void read.then((e) => e.overran && kubectlReads.get(key) === read && kubectlReads.delete(key));
      }
      return kubectlReads.get(key)!;
    },
    kubectlAgain: (args, timeoutSec) => {
      const read = access.kubectl(args, timeoutSec);
      kubectlReads.set(JSON.stringify(args), read); // later reads in this run see the newer answer
      return read;
    },
  };
  // Every tier's lookups (reads only: kubectl, a node's own state) start with the run, so they are
  // answered by the time the tier runs; its run makes the same calls and gets those answers as evidence.
  const reader: ClusterReader = {
    lab,
    paceOf,
    kubectl: shared.kubectl,
    onNode: (node, command, t) => keep([node, command], access.onNode(node, command, t)),
    onNodeSteps: (node, commands, t) => keep([node, commands], access.onNodeSteps(node, commands, t)),
  };
  for (const tier of selected) void tier.lookups?.(reader).catch(() => {}); // a failed read is met again, and recorded, in the tier's run
  // Every tier's traffic goes out with the run (the foundation of a healthy lab holds, and waiting
  // for it would put every tier's seconds end to end); its verdict waits for the tiers it stands on,
  // and a tier whose foundation broke is reported as blocked, whatever its own run saw.
  const results = new Map<TierId, TierResult>();
  const finished = new Map<TierId, Promise<void>>();
  const ran = new Map<TierId, Promise<TierResult>>();
  const blocked = new Set<TierId>();
  const after = (deps: TierId[] = []) => Promise.all(deps.map((d) => finished.get(d)));
  for (const tier of selected) {
    const deps = TIER_DEPENDENCIES[tier.id];
    const run = Promise.all((deps.after ?? []).map((d) => ran.get(d))).then(() =>
      runTierWithRetry(tier, lab, shared, now, tierLimitSec, () => !blocked.has(tier.id)),
    );
    ran.set(tier.id, run);
    finished.set(
      tier.id,
      after(deps.hard).then(async () => {
        const blockedBy = lowestBroken(tier.id, results);
        if (blockedBy) blocked.add(tier.id);
        const result = blockedBy
          ? { tier: tier.id, title: tier.title, verdict: "blocked" as const, blockedBy, durationMs: 0, hops: [], evidence: [] }
          : await run;
        await after(deps.soft);
        annotateSoftDependencies(result, results);
        results.set(tier.id, result);
        opts.onResult?.(result);
      }),
    );
  }
  await after(selected.map((t) => t.id));
  const list = selected.map((t) => results.get(t.id)!);
  return {
    lab: lab.name,
    startedAt: new Date(started).toISOString(),
    durationMs: now() - started,
    ok: list.every((r) => r.verdict === "pass" || r.verdict === "skipped"),
    results: list,
    ...(pace ? { pace: await pace } : {}),
  };
}

/** The lowest tier, among those this one stands on (directly or not), that failed or is inconclusive. */
function lowestBroken(id: TierId, results: Map<TierId, TierResult>): TierId | undefined {
  const broken = TIER_DEPENDENCIES[id].hard.flatMap((dep) => {
    const r = results.get(dep);
    return r?.verdict === "fail" || r?.verdict === "inconclusive" ? [dep] : r?.verdict === "blocked" && r.blockedBy ? [r.blockedBy] : [];
  });
  return broken.sort((a, b) => TIER_IDS.indexOf(a) - TIER_IDS.indexOf(b))[0];
}

function annotateSoftDependencies(result: TierResult, results: Map<TierId, TierResult>): void {
  if (result.verdict !== "fail") return;
  const soft = (TIER_DEPENDENCIES[result.tier].soft ?? []).filter((d) => ["fail", "blocked"].includes(results.get(d)?.verdict ?? ""));
  if (soft.length) result.likelyFix = [result.likelyFix, `(also broken: ${soft.join(", ")})`].filter(Boolean).join(" ");
}

/** The tiers' access during a run: kubectl reads shared by every tier, and a way to read again. */
type SharedAccess = LabAccess & Pick<ProbeContext, "kubectlAgain" | "keepPcap" | "paceOf">;

const overran = (answer: Exec | Exec[]) => [answer].flat().some((e) => e.overran);

/** A step, or the whole tier, overran its deadline: what the tier saw so far is no finding. */
class Overran extends NoFinding {}

const firstLine = (command: string) => {
  const lines = command.split("\n");
  return lines.length > 1 ? `${lines[0]} ...` : lines[0];
};

/**
 * A tier, retried once when a step overran its deadline (a node or the API server that did not run it
 * in time); when the retry overruns too, the tier is inconclusive, with how busy every node was.
 */
async function runTierWithRetry(
  tier: Tier,
  lab: Lab,
  access: SharedAccess,
  now: () => number,
  limitSec: Promise<number>,
  wanted: () => boolean,
): Promise<TierResult> {
  const started = now();
  const first = await runTier(tier, lab, access, now, limitSec);
  if (!first.overran || !wanted()) return first.result; // a blocked tier's retry would be load for nothing
  const second = await runTier(tier, lab, access, now, limitSec);
  const evidence = [...first.result.evidence, ...second.result.evidence];
  if (!second.overran) return { ...second.result, retried: first.overran, durationMs: now() - started, evidence };
  const loads = await readNodeLoads(lab, access, TIMEOUT.query);
  const busy = loads.map(
    ({ node, read, load }) => `${node}: ${load ? describeLoad(load) : `no reading (${(read.stderr.trim() || `exit ${read.exitCode}`).split("\n").pop()})`}`,
  );
  return {
    tier: tier.id,
    title: tier.title,
    verdict: "inconclusive",
    reason: `${second.overran}, twice (first: ${first.overran}); ${busy.join("; ")}`,
    durationMs: now() - started,
    hops: second.result.hops,
    evidence: [...evidence, ...loads.map((l) => l.read)],
  };
}

/** One run of a tier; `overran` names the step that overran its deadline, when one did (the result is then no finding). */
async function runTier(
  tier: Tier,
  lab: Lab,
  access: SharedAccess,
  now: () => number,
  limitSec: Promise<number>,
): Promise<{ result: TierResult; overran?: string }> {
  const started = now();
  const hops: Hop[] = [];
  const evidence: Exec[] = [];
  const note = (exec: Exec, overSsh: boolean) => {
    evidence.push(exec);
    if (exec.overran) throw new Overran(`\`${firstLine(exec.command)}\` on ${exec.where} overran its deadline (${(exec.ms / 1000).toFixed(1)} s)`);
    const lost = managementFailure(exec, overSsh);
    if (lost) throw new Broken(lost);
  };
  const record = async (p: Promise<Exec>, overSsh = false) => {
    const exec = await p;
    note(exec, overSsh);
    return exec;
  };
  const recordSteps = async (p: Promise<Exec[]>, overSsh = false) => {
    const steps = await p;
    for (const step of steps) note(step, overSsh);
    return steps;
  };
  const ctx: ProbeContext = {
    lab,
    onNode: (node, cmd, t) => record(access.onNode(node, cmd, t), true),
    onNodeSteps: (node, cmds, t) => recordSteps(access.onNodeSteps(node, cmds, t), true),
    kubectl: (args, t) => record(access.kubectl(args, t)),
    kubectlAgain: (args, t) => record(access.kubectlAgain(args, t)),
    // Commands in a pod go through its node's ssh session (see live.ts).
    inPod: (pod, cmd, t) => record(access.inPod(pod, cmd, t), true),
    inPodSteps: (pod, cmds, t) => recordSteps(access.inPodSteps(pod, cmds, t), true),
    fromOutsideClient: (cmd, t) => record(access.fromOutsideClient(cmd, t)),
    paceOf: access.paceOf,
    ...(access.keepPcap ? { keepPcap: access.keepPcap } : {}),
    hop: (name, detail, ok, fix) => {
      hops.push({ name, detail, ok, ...(fix && !ok ? { fix } : {}) });
      return ok;
    },
  };
  let skipped: string | undefined;
  let overrun: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let done = false;
  try {
    // The tier starts now; its limit is armed once the nodes' pace is known (a fraction of a second in).
    const deadline = new Promise<never>((_, reject) => {
      void limitSec.then((sec) => {
        if (!done) timer = setTimeout(() => reject(new Overran(`the tier did not finish within ${sec} s`)), sec * 1000);
      });
    });
    skipped = (await Promise.race([tier.run(ctx), deadline]))?.skipped;
  } catch (err) {
    if (err instanceof NoFinding) overrun = err.message;
    else
      hops.push(
        err instanceof Broken
          ? err.hop
          : {
              name: "probe",
              detail: `error: ${(err as Error).message}`,
              ok: false,
              fix: "a bug in the probe or an output it does not understand: see the evidence",
            },
      );
  } finally {
    done = true;
    clearTimeout(timer);
  }
  const firstBroken = hops.find((h) => !h.ok);
  const result: TierResult = {
    tier: tier.id,
    title: tier.title,
    verdict: firstBroken ? "fail" : skipped ? "skipped" : "pass",
    ...(skipped && !firstBroken ? { reason: skipped } : {}),
    durationMs: now() - started,
    hops,
    ...(firstBroken ? { firstBrokenHop: `${firstBroken.name}: ${firstBroken.detail}` } : {}),
    ...(firstBroken?.fix ? { likelyFix: firstBroken.fix } : {}),
    // What arrived before the verdict; a step still running after a broken hop ends on its own timeout.
    evidence: [...evidence],
  };
  // A hop found broken before the overrun is a finding all the same.
  return overrun && !firstBroken ? { result, overran: overrun } : { result };
}

/** The lab itself could not be reached (ssh or the API server), so nothing this tier saw is a network finding. */
function managementFailure(exec: Exec, overSsh: boolean): Hop | undefined {
  // The agent says so: a command's own exit 255 (`ip` on a missing device) is the command's answer.
  const sshFailed = overSsh && !!exec.unreachable;
  const apiFailed = /Unable to connect to the server|The connection to the server .* was refused|no kubeconfig/.test(exec.stderr);
  if (!sshFailed && !apiFailed) return undefined;
  return {
    name: sshFailed ? `ssh to ${exec.where}` : "Kubernetes API server",
    detail: exec.stderr.trim().split("\n").pop() || `exit ${exec.exitCode}`,
    ok: false,
    fix: "the lab is not up or not reachable from here: `npx k8slab status` shows what runs; `npx k8slab up` creates or repairs it",
  };
}

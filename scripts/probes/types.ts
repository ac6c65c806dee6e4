// The probes' data: how a probe touches the lab (one injectable interface), what a tier is, and what it reports.
import type { Lab } from "../../core/index.ts";
import type { TierId } from "./contract.ts";

/** One command a probe ran, as evidence: where, what, and what came back. */
export interface Exec {
  /** "node1", "kubectl", "pod k8slab-probe/toolbox-7xk2p", "outside client". */
  where: string;
  command: string;
  /** 124 when the step was cut off by its timeout (as coreutils `timeout` reports it). */
  exitCode: number;
  stdout: string;
  stderr: string;
  ms: number;
  /**
   * The step's own deadline ended it, not the command: the node (or the API server) did not run it
   * in time. Such a step says nothing about the network; the runner retries the tier.
   */
  overran?: true;
  /** Nothing ran: the node's agent (its ssh session) could not be reached or ended. Not the command's own exit 255. */
  unreachable?: true;
}

/**
 * Everything a probe may do to the lab. Every call has a timeout and resolves (never rejects)
 * with what happened; the live implementation is scripts/probes/live.ts, tests replay recordings.
 */
export interface LabAccess {
  /** A shell command as root on a node (over SSH). */
  onNode(node: string, command: string, timeoutSec: number): Promise<Exec>;
  /** Commands run one after another in one ssh session, each answered as its own Exec; the timeout covers them all. */
  onNodeSteps(node: string, commands: readonly string[], timeoutSec: number): Promise<Exec[]>;
  /** kubectl with the lab's admin kubeconfig; args are not passed through a shell. */
  kubectl(args: string[], timeoutSec: number): Promise<Exec>;
  /** A shell command in a pod's first container: its mount, network, UTS and IPC namespaces. */
  inPod(pod: PodRef, command: string, timeoutSec: number): Promise<Exec>;
  /** Commands run one after another in one shell in the pod, each answered as its own Exec; the timeout covers them all. */
  inPodSteps(pod: PodRef, commands: readonly string[], timeoutSec: number): Promise<Exec[]>;
  /** A shell command on the lab's outside client: the lab LAN's gateway address, in the lab's network namespace. */
  fromOutsideClient(command: string, timeoutSec: number): Promise<Exec>;
  /**
   * How fast each node runs a process right now, and the factor every step's deadline is stretched by
   * (live access; a recording runs at the pace it was recorded at, so it has none).
   */
  pace?(): Promise<NodePace[]>;
}

/** A node's measured speed: milliseconds to start and end `/bin/true`, and what that makes of the deadlines. */
export interface NodePace {
  node: string;
  /** Undefined when the node did not answer the measurement (it is then unreachable, and says so elsewhere). */
  processStartMs?: number;
  /** Every deadline on this node is its TIMEOUT times this (1 on a node as fast as the one they were sized on). */
  factor: number;
}

/** A pod the probes run commands in: where it runs, and its first container as the runtime names it. */
export interface PodRef {
  namespace: string;
  name: string;
  node: string;
  /** "containerd://<64 hex>", from the pod's status. */
  containerID: string;
}

/** One step of a path (or one fact a tier checks), with the live values that explain it. */
export interface Hop {
  name: string;
  detail: string;
  ok: boolean;
  /** What to do when this hop is broken. */
  fix?: string;
}

/** inconclusive: a step overran its deadline twice (a node too busy to answer), so the tier could neither pass nor fail. */
export type Verdict = "pass" | "fail" | "inconclusive" | "blocked" | "skipped";

export interface TierResult {
  tier: TierId;
  title: string;
  verdict: Verdict;
  /** The lowest failed or inconclusive tier this one stands on (only when blocked). */
  blockedBy?: TierId;
  /** Why the tier was skipped (a one-node lab has no cross-node path) or is inconclusive (which step overran, how busy the nodes were). */
  reason?: string;
  durationMs: number;
  /** The step that overran its deadline in the first run, when the tier was run again (both runs' evidence is kept). */
  retried?: string;
  /** In the order a packet crosses them. */
  hops: Hop[];
  firstBrokenHop?: string;
  likelyFix?: string;
  evidence: Exec[];
}

export interface ProbeReport {
  lab: string;
  startedAt: string;
  durationMs: number;
  /** True when every selected tier passed or was skipped. */
  ok: boolean;
  results: TierResult[];
  /** Each node's measured pace, when the access measured it: the deadlines it ran under. */
  pace?: NodePace[];
}

/** What a tier's probe gets: the lab, access to it (recorded as this tier's evidence), and a place for its hops. */
export interface ProbeContext extends LabAccess {
  lab: Lab;
  /** kubectl made now, not the run's shared read: a second look at an object that may have changed since the run began. */
  kubectlAgain(args: string[], timeoutSec: number): Promise<Exec>;
  /** When set (`probe --pcap DIR`), captures also keep their packets as pcap, handed over here. */
  keepPcap?: (node: string, capture: string, pcap: Buffer) => void;
  /**
   * The factor a node's waits are stretched by (its measured pace; the slowest node's when none is
   * named; 1 when unmeasured): for a command's own bounds on what a busy emulated CPU answers (etcd,
   * CoreDNS, a workload), which the step's deadline alone does not cover.
   */
  paceOf(node?: string): Promise<number>;
  /** Records a hop; returns ok so checks read as `if (!ctx.hop(...)) ...`. */
  hop(name: string, detail: string, ok: boolean, fix?: string): boolean;
}

/** What a tier's lookups use: the lab, kubectl reads (made once per run and shared) and reads on the nodes. */
export type ClusterReader = Pick<ProbeContext, "lab" | "kubectl" | "onNode" | "onNodeSteps" | "paceOf">;

/** `paceOf` from an access's measured paces (measured once, on the first ask; 1 where there is none). */
export function paceLookup(access: LabAccess): ProbeContext["paceOf"] {
  let paces: Promise<NodePace[]> | undefined;
  return async (node) => {
    paces ??= access.pace?.() ?? Promise.resolve([]);
    const ps = await paces;
    return node ? (ps.find((p) => p.node === node)?.factor ?? 1) : Math.max(1, ...ps.map((p) => p.factor));
  };
}

/** A ClusterReader straight on an access (commands that read the cluster outside a probe run). */
export const readerOf = (lab: Lab, access: LabAccess): ClusterReader => ({ ...access, lab, paceOf: paceLookup(access) });

export interface Tier {
  id: TierId;
  title: string;
  /**
   * Reads the tier needs that send no traffic through what it tests (kubectl, a node's own state).
   * The runner starts every tier's lookups when the run starts, so they are answered by the time
   * the tier runs; the tier's run calls the same lookups and gets those answers as its evidence.
   */
  lookups?(ctx: ClusterReader): Promise<unknown>;
  /** Runs the probe; hops go to ctx.hop. Returns a reason only when the tier does not apply to this lab. */
  // biome-ignore lint/suspicious/noConfusingVoidType: a tier that ran returns nothing; only a skip says why
  run(ctx: ProbeContext): Promise<{ skipped: string } | void>;
}

/** Thrown by a probe when a hop is broken and nothing after it can be checked; the runner records the hop. */
export class Broken extends Error {
  constructor(readonly hop: Hop) {
    super(`${hop.name}: ${hop.detail}`);
  }
}

/**
 * Thrown when a step could not look (a capture that did not start, or that ended before the traffic
 * was sent): what the tier saw is no finding. The runner retries the tier once, then calls it inconclusive.
 */
export class NoFinding extends Error {}

/** Ends the tier at a broken hop. */
export function broken(name: string, detail: string, fix?: string): never {
  throw new Broken({ name, detail, ok: false, ...(fix ? { fix } : {}) });
}

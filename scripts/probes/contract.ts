// What the probes rely on: the names the cluster must provide, the tiers and what each stands on, per-step timeouts.

/** Source port of the underlay probe's UDP datagrams: it tells them apart from flannel's own VXLAN traffic. */
export const UNDERLAY_PROBE_SOURCE_PORT = 58472;

/** How many requests the service probe sends through the ClusterIP to see the spread over the replicas. */
export const SERVICE_REQUESTS = 30;

/** The path the ingress and flow probes ask business-manager for: /readyz names the pod that answered. */
export const BUSINESS_READY_PATH = "/readyz";

/** A name under the reserved .invalid TLD (RFC 6761): it exists nowhere, so DNS must answer "no such name". */
export const DNS_MISS_NAME = "k8slab-probe.invalid";

/**
 * Seconds each kind of step may take before it is cut off; no probe step waits longer. Sized for
 * emulated CPUs (TCG), where a Go binary's start and a TLS handshake take seconds when the
 * probes' parallel steps share the guest's CPUs.
 */
export const TIMEOUT = {
  /**
   * kubectl get, ip, bridge, cat, etcdctl get: one read. The run starts every tier's reads at once,
   * beside both agents' ssh handshakes: kubectl reads then took 5.5-18.2 s (idle: 0.4-0.6 s).
   */
  read: 30,
  /** ping, dig, a single curl. */
  query: 15,
  /**
   * The most a capture runs: its collect stops it once the traffic was sent, so this only ends one
   * whose run went away (or a sender that outlasted every deadline of its own, 8 x a query).
   */
  captureMax: 150,
  /** The service probe's burst of requests. */
  burst: 25,
  /** A whole tier, in case a step's own timeout failed to fire. */
  tier: 90,
} as const;

/**
 * The deadlines above follow the nodes' speed. They were sized where a node started and ended
 * `/bin/true` in `referenceMs` (34 ms, node1 of the reference lab under TCG); a node measured slower at
 * the start of a run (143 ms on a slower host, more while `up` refreshes beside the probes) gets each
 * deadline stretched by the ratio, up to `maxFactor`: a node slower than that is reported inconclusive.
 */
export const PACE = { referenceMs: 34, maxFactor: 8 } as const;

/** The pace a node's measured process start gives its deadlines. */
export const paceFactor = (processStartMs: number | undefined) =>
  processStartMs === undefined ? 1 : Math.min(PACE.maxFactor, Math.max(1, Math.round((processStartMs / PACE.referenceMs) * 10) / 10));

/**
 * How long the service probe gives kube-proxy to write what the EndpointSlice already shows: on the ipvs
 * variant a new pod's real server appeared ~10 s after it was ready (the probes run right after `up`'s rollout).
 */
export const KUBE_PROXY_CATCH_UP = { everySec: 2, withinSec: 20 } as const;

/** Tier ids, bottom-up: the order they run and are reported in. */
export const TIER_IDS = ["underlay", "flannel", "pod-same-node", "pod-cross-node", "service", "dns", "nodeport", "ingress", "business-flow"] as const;
export type TierId = (typeof TIER_IDS)[number];

/**
 * What each tier stands on. Every tier runs from the start of a probe run; one whose hard
 * dependency failed (or is itself blocked) is reported as blocked by the lowest broken tier, not
 * by what its own run saw. A soft dependency only annotates a failure (the NGINX Inc controller
 * reaches pods through their endpoints, not through DNS). `after`: traffic that would show in
 * another tier's evidence waits for that tier's run (NodePort requests to node1 pass the same
 * KUBE-SVC and KUBE-SEP chains whose counters the service tier reads).
 */
export const TIER_DEPENDENCIES: Record<TierId, { hard: TierId[]; soft?: TierId[]; after?: TierId[] }> = {
  underlay: { hard: [] },
  flannel: { hard: ["underlay"] },
  "pod-same-node": { hard: ["flannel"] },
  "pod-cross-node": { hard: ["flannel"] },
  service: { hard: ["pod-cross-node", "pod-same-node"] },
  dns: { hard: ["service"] },
  nodeport: { hard: ["service"], after: ["service"] },
  ingress: { hard: ["service"], soft: ["dns"] },
  "business-flow": { hard: ["ingress", "dns"] },
};

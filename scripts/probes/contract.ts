// What the probes rely on: the names the cluster must provide, the tiers and what each stands on, per-step timeouts.
import path from "node:path";
import { labPaths } from "../machines/spec.ts";

/** The probe pods: a DaemonSet, so every node has one pod to send from and to. They run `sleep infinity`. */
export const TOOLBOX = { namespace: "k8slab-probe", daemonSet: "toolbox", selector: "app=toolbox" } as const;

/** The workloads' namespace; their pods carry app=<name>, and data-product also has a headless Service. */
export const WORKLOAD_NAMESPACE = "default";
export const appSelector = (name: string) => `app=${name}`;
export const headlessService = (name: string) => `${name}-headless`;

/** CoreDNS, under the names every Kubernetes DNS client and tool expects. */
export const CLUSTER_DNS = { namespace: "kube-system", service: "kube-dns", selector: "k8s-app=kube-dns" } as const;

/** The ingress controller runs with hostNetwork: it listens on port 80 of the node(s) it runs on. */
export const INGRESS_CONTROLLER = { namespace: "nginx-ingress", port: 80 } as const;

/** The nodes' LAN NIC (the node image boots with net.ifnames=0); VXLAN packets cross it. */
export const UNDERLAY_NIC = "eth0";

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
   * tcpdump on the underlay, from the moment it listens: bounded by its own packet count and by this.
   * The traffic is sent after it listens, by a step that may itself take seconds to start (a kubectl
   * exec under load), so this covers that start as well; a healthy capture ends at its count.
   */
  capture: 30,
  /** The service probe's burst of requests. */
  burst: 25,
  /** A whole tier, in case a step's own timeout failed to fire. */
  tier: 90,
} as const;

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

/** The admin kubeconfig the ControlPlane tier writes (same place as its adminKubeconfigFile; not imported, to keep Pulumi out of the probe's start-up). */
export const adminKubeconfig = (labName: string) => path.join(labPaths(labName).dir, "admin.kubeconfig");

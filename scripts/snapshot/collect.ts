// What a snapshot reads from a live lab: per node one shell of reads (links, addresses, routes,
// neighbours, FDB, iptables, sysctls, config digests, versions), etcd's flannel leases, and a few
// API reads. Raw outputs only: canonical.ts turns them into the snapshot.
import type { Lab, LabNode } from "../../core/index.ts";
import { FLANNEL_ETCD_PREFIX } from "../../core/names.ts";
import { configPath, etcdctlCommand, NODE_PATHS } from "../../core/node.ts";
import type { LabAccess } from "../probes/types.ts";

/** Seconds for one node's batch of reads, or one API read, on a busy emulated node. */
const READ_SEC = 60;

/** The datapath sysctls: forwarding, reverse-path filtering, bridged traffic through iptables. */
export const SYSCTLS = [
  "net.ipv4.ip_forward",
  "net.ipv4.conf.all.rp_filter",
  "net.ipv4.conf.default.rp_filter",
  "net.ipv4.conf.eth0.rp_filter",
  "net.bridge.bridge-nf-call-iptables",
];

/** The rendered configs whose digests a snapshot records, by what reads them. */
export function configFiles(node: LabNode): string[] {
  const units = [
    "kubelet",
    "kube-proxy",
    "flanneld",
    "k8slab-netstamp",
    ...(node.isControlPlane ? ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"] : []),
  ];
  return [
    NODE_PATHS.containerdConfig,
    `${NODE_PATHS.cniConf}/10-k8slab.conflist`,
    configPath("kubelet.yaml"),
    configPath("kube-proxy.yaml"),
    configPath("flannel-subnet.env"),
    ...(node.isControlPlane ? [configPath("scheduler.yaml"), configPath("authentication.yaml"), configPath("flannel-net-conf.json")] : []),
    ...units.map((u) => `${NODE_PATHS.units}/${u}.service`),
  ];
}

/** One node's reads, by name: each its own step, so one that fails leaves the others. */
export function nodeReads(lab: Lab, node: LabNode): Record<string, string> {
  const dev = lab.pods.flannel.device;
  const bin = NODE_PATHS.bin;
  return {
    links: "ip -d -j link show",
    addresses: "ip -j addr show",
    routes: "ip -j route show table main",
    // vxlan's own tables: the other backends have neither.
    ...(lab.pods.flannel.backend === "vxlan" ? { neighbours: `ip -j neigh show dev ${dev}`, fdb: `bridge -j fdb show dev ${dev}` } : {}),
    nat: "iptables-save -t nat",
    // kube-proxy's own table in the other modes (iptables-save above still shows its few helper rules).
    ...(lab.services.kubeProxyMode === "ipvs" ? { ipvs: "ipvsadm -Ln" } : {}),
    ...(lab.services.kubeProxyMode === "nftables" ? { nftables: "nft list table ip kube-proxy" } : {}),
    filter: "iptables-save -t filter",
    sysctls: `sysctl -e ${SYSCTLS.join(" ")}`,
    digests: `sha256sum ${configFiles(node).join(" ")}`,
    kernel: "uname -r",
    kubelet: `${bin}/kubelet --version`,
    "kube-proxy": `${bin}/kube-proxy --version`,
    flanneld: `${bin}/flanneld --version 2>&1`,
    containerd: "containerd --version",
    ...(node.isControlPlane
      ? { leases: `${etcdctlCommand(lab)} --dial-timeout=8s --command-timeout=20s get --prefix ${FLANNEL_ETCD_PREFIX}/subnets`, etcd: `${bin}/etcd --version` }
      : {}),
  };
}

/** The API reads: JSON, trimmed by canonical.ts to what the datapath depends on. */
export const API_READS: Record<string, string[]> = {
  services: ["get", "services", "-A", "-o", "json"],
  endpointslices: ["get", "endpointslices", "-A", "-o", "json"],
  // Who owns each pod IP: enough to name a pod by its workload, not its random suffix.
  pods: [
    "get",
    "pods",
    "-A",
    "-o",
    `jsonpath={range .items[*]}{.metadata.namespace}{"\\t"}{.metadata.name}{"\\t"}{.status.podIP}{"\\t"}{.spec.nodeName}{"\\t"}{.metadata.ownerReferences[0].kind}{"\\t"}{.metadata.ownerReferences[0].name}{"\\n"}{end}`,
  ],
  ingresses: ["get", "ingresses,ingressclasses", "-A", "-o", "json"],
  coredns: ["get", "configmap", "coredns", "-n", "kube-system", "-o", "json"],
  version: ["version", "-o", "json"],
};

export interface RawSnapshot {
  lab: string;
  takenAt: string;
  /** Per node, each read's stdout (a read that failed: its stderr, prefixed "error: "). */
  nodes: Record<string, Record<string, string>>;
  api: Record<keyof typeof API_READS, string>;
}

const answer = (e: { exitCode: number; stdout: string; stderr: string }) =>
  e.exitCode === 0 ? e.stdout : `error: ${(e.stderr || e.stdout).trim() || `exit ${e.exitCode}`}`;

/** Reads everything at once: every node's batch and the API reads side by side. */
export async function collect(lab: Lab, access: LabAccess, now = () => new Date()): Promise<RawSnapshot> {
  const takenAt = now().toISOString();
  const nodeEntries = await Promise.all(
    lab.nodes.map(async (node) => {
      const reads = nodeReads(lab, node);
      const names = Object.keys(reads);
      const execs = await access.onNodeSteps(node.name, Object.values(reads), READ_SEC);
      return [node.name, Object.fromEntries(names.map((n, i) => [n, answer(execs[i])]))] as const;
    }),
  );
  const apiEntries = await Promise.all(Object.entries(API_READS).map(async ([name, args]) => [name, answer(await access.kubectl(args, READ_SEC))] as const));
  return { lab: lab.name, takenAt, nodes: Object.fromEntries(nodeEntries), api: Object.fromEntries(apiEntries) as RawSnapshot["api"] };
}

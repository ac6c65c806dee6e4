// Where things live on a node and where its daemons listen: one table so units, configs, remote
// steps and probes agree.
import type { Lab } from "./lab.ts";
export const NODE_PATHS = {
  bin: "/usr/local/bin",
  pki: "/etc/kubernetes/pki",
  kubeconfigs: "/etc/kubernetes",
  config: "/etc/kubernetes/config",
  etcdData: "/var/lib/etcd",
  cniBin: "/opt/cni/bin",
  cniConf: "/etc/cni/net.d",
  flannelSubnetFile: "/run/flannel/subnet.env",
  containerdConfig: "/etc/containerd/config.toml",
  containerdSocket: "/run/containerd/containerd.sock",
  units: "/etc/systemd/system",
} as const;

/** The bundle's binaries a node runs, by bundle path (bin/ lands in NODE_PATHS.bin, cni/bin/ in cniBin): what its roles need. */
export function bundleFilesFor(node: { isControlPlane: boolean }): string[] {
  const controlPlane = ["etcd", "etcdctl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"];
  const everyNode = ["kubelet", "kube-proxy", "flanneld", "crictl"];
  const cni = ["bridge", "host-local", "loopback", "portmap", "flannel"];
  return [...(node.isControlPlane ? controlPlane : []), ...everyNode].map((b) => `bin/${b}`).concat(cni.map((c) => `cni/bin/${c}`));
}

/** Every bundle file any node may run (a control-plane node runs them all). */
export const NODE_BUNDLE_FILES = bundleFilesFor({ isControlPlane: true });

export const pki = (file: string) => `${NODE_PATHS.pki}/${file}`;
export const kubeconfigPath = (who: string) => `${NODE_PATHS.kubeconfigs}/${who}.kubeconfig`;
export const configPath = (file: string) => `${NODE_PATHS.config}/${file}`;

export const API_SERVER_PORT = 6443;
export const apiServerURL = (lab: Lab) => `https://${lab.controlPlane.address}:${API_SERVER_PORT}`;

/** The API server's certificate must be valid for every name and address clients use to reach it. */
export function apiServerSANs(lab: Lab): { dns: string[]; ips: string[] } {
  const domain = lab.services.clusterDomain;
  return {
    dns: ["kubernetes", "kubernetes.default", "kubernetes.default.svc", `kubernetes.default.svc.${domain}`, lab.controlPlane.name, "localhost"],
    // 127.0.0.1 also covers the management forward on the host (qemu driver).
    ips: [lab.services.kubernetesServiceIP, lab.controlPlane.address, "127.0.0.1"],
  };
}

export const ETCD_CLIENT_PORT = 2379;
export const ETCD_PEER_PORT = 2380;

export const etcdEndpoint = (lab: Lab) => `https://${lab.controlPlane.address}:${ETCD_CLIENT_PORT}`;

/** The two CAs (as kubeadm has them): etcd trusts only its own, so no Kubernetes certificate opens it. */
export const CA = { kubernetes: "ca", etcd: "etcd-ca" } as const;
export type CaName = (typeof CA)[keyof typeof CA];
export const caCert = (ca: CaName) => pki(`${ca}.crt`);

/** The etcd client certificates: the API server's (etcd's root role) and flannel's (its prefix only, on every node). */
export const ETCD_CLIENT_CERT = { apiServer: "apiserver-etcd-client", flannel: "flannel-etcd-client" } as const;

/**
 * etcdctl on the control-plane node. By default as flannel: what probes, snapshots and exercises read
 * and change is flannel's own prefix, and that key is allowed nothing else.
 */
export function etcdctlCommand(lab: Lab, as: (typeof ETCD_CLIENT_CERT)[keyof typeof ETCD_CLIENT_CERT] = ETCD_CLIENT_CERT.flannel): string {
  return [
    `${NODE_PATHS.bin}/etcdctl`,
    `--endpoints=${etcdEndpoint(lab)}`,
    `--cacert=${caCert(CA.etcd)}`,
    `--cert=${pki(`${as}.crt`)}`,
    `--key=${pki(`${as}.key`)}`,
  ].join(" ");
}

// Every certificate the cluster needs, and why each has the names it has. Pure: Lab in, specs out.
import type { Lab } from "../../core/index.ts";
import { apiServerSANs } from "../../core/node.ts";

export type Usage = "server" | "client";

export interface CertSpec {
  /** File base name on the nodes: <name>.crt and <name>.key under /etc/kubernetes/pki. */
  name: string;
  commonName: string;
  /** Kubernetes reads O as the user's groups. */
  organization?: string;
  dns: string[];
  ips: string[];
  usages: Usage[];
  /** The nodes that get this certificate and its key. */
  nodes: string[];
}

export function certificateCatalog(lab: Lab): CertSpec[] {
  const cp = lab.controlPlane;
  const cpOnly = [cp.name];
  const etcdNames = { dns: [cp.name, "localhost"], ips: [cp.address, "127.0.0.1"] };
  const client = (name: string, commonName: string, nodes: string[], organization?: string): CertSpec => ({
    name,
    commonName,
    ...(organization ? { organization } : {}),
    dns: [],
    ips: [],
    usages: ["client"],
    nodes,
  });
  return [
    { name: "etcd-server", commonName: `etcd-${cp.name}`, ...etcdNames, usages: ["server", "client"], nodes: cpOnly },
    { name: "etcd-peer", commonName: `etcd-peer-${cp.name}`, ...etcdNames, usages: ["server", "client"], nodes: cpOnly },
    client("apiserver-etcd-client", "kube-apiserver-etcd-client", cpOnly),
    // flanneld on every node reads and writes its subnet lease in etcd.
    client(
      "flannel-etcd-client",
      "flannel",
      lab.nodes.map((n) => n.name),
    ),
    { name: "apiserver", commonName: "kube-apiserver", ...apiServerSANs(lab), usages: ["server"], nodes: cpOnly },
    // For logs, exec and port-forward the API server calls the kubelets; system:masters may do that.
    client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", cpOnly, "system:masters"),
    // The system:kube-* user names are the ones the default RBAC roles are bound to.
    client("controller-manager", "system:kube-controller-manager", cpOnly),
    client("scheduler", "system:kube-scheduler", cpOnly),
    // The Node authorizer accepts a kubelet as system:node:<name> in group system:nodes, and lets it
    // touch only its own Node and the pods bound to it. The same certificate serves kubelet's port 10250.
    ...lab.nodes.map<CertSpec>((n) => ({
      name: `kubelet-${n.name}`,
      commonName: `system:node:${n.name}`,
      organization: "system:nodes",
      dns: [n.name],
      ips: [n.address],
      usages: ["server", "client"],
      nodes: [n.name],
    })),
    client(
      "kube-proxy",
      "system:kube-proxy",
      lab.nodes.map((n) => n.name),
      "system:node-proxier",
    ),
    // The admin user stays on the host running k8slab (kubeconfig output); it is never copied to a node.
    client("admin", "admin", [], "system:masters"),
    // The ingress controller's API adapter serves on the node's loopback inside its pod; it reaches
    // the pod as a Secret, not as a node file.
    { name: "ingress-adapter", commonName: "ingress-adapter", dns: ["localhost"], ips: ["127.0.0.1"], usages: ["server"], nodes: [] },
  ];
}

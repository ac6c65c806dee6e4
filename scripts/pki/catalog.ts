// Every certificate the cluster needs, and why each has the names it has. Pure: Lab in, specs out.
import type { Lab } from "../../core/index.ts";
import { CLUSTER_ADMINS_GROUP, ETCD_USERS } from "../../core/names.ts";
import { apiServerSANs, CA, type CaName, ETCD_CLIENT_CERT } from "../../core/node.ts";

export type Usage = "server" | "client";

export interface CertSpec {
  /** File base name on the nodes: <name>.crt and <name>.key under /etc/kubernetes/pki. */
  name: string;
  commonName: string;
  /** The CA that signs it: etcd trusts only its own. */
  ca: CaName;
  /** Kubernetes reads O as the user's groups. */
  organization?: string;
  dns: string[];
  ips: string[];
  usages: Usage[];
  /** The nodes that get this certificate and its key. */
  nodes: string[];
  /** The units that present or read it there: a renewed certificate restarts them. */
  readBy: string[];
}

/** The stack config key (namespace k8slab) `k8slab certs --renew` sets to the time of the renewal. */
export const CERTIFICATES_RENEWED_KEY = "certificatesRenewed";

/** How long a leaf certificate lasts (the CAs: ten years). */
export const LEAF_VALID_DAYS = 365;

/** What a certificate says (what issuing it depends on): where it goes and who reads it are not part of it. */
export type CertIdentity = Pick<CertSpec, "name" | "commonName" | "ca" | "organization" | "dns" | "ips" | "usages">;
export const certIdentity = ({ name, commonName, ca, organization, dns, ips, usages }: CertSpec): CertIdentity => ({
  name,
  commonName,
  ca,
  organization,
  dns,
  ips,
  usages,
});

export function certificateCatalog(lab: Lab): CertSpec[] {
  const cp = lab.controlPlane;
  const cpOnly = [cp.name];
  const etcdNames = { dns: [cp.name, "localhost"], ips: [cp.address, "127.0.0.1"] };
  const client = (name: string, commonName: string, nodes: string[], readBy: string[], organization?: string, ca: CaName = CA.kubernetes): CertSpec => ({
    name,
    commonName,
    ca,
    readBy,
    ...(organization ? { organization } : {}),
    dns: [],
    ips: [],
    usages: ["client"],
    nodes,
  });
  return [
    { name: "etcd-server", commonName: `etcd-${cp.name}`, ca: CA.etcd, ...etcdNames, usages: ["server", "client"], nodes: cpOnly, readBy: ["etcd"] },
    { name: "etcd-peer", commonName: `etcd-peer-${cp.name}`, ca: CA.etcd, ...etcdNames, usages: ["server", "client"], nodes: cpOnly, readBy: ["etcd"] },
    client(ETCD_CLIENT_CERT.apiServer, ETCD_USERS.apiServer, cpOnly, ["kube-apiserver"], undefined, CA.etcd),
    // flanneld on every node reads and writes its subnet lease in etcd (and only there: its etcd role).
    client(
      ETCD_CLIENT_CERT.flannel,
      ETCD_USERS.flannel,
      lab.nodes.map((n) => n.name),
      ["flanneld"],
      undefined,
      CA.etcd,
    ),
    {
      name: "apiserver",
      commonName: "kube-apiserver",
      ca: CA.kubernetes,
      ...apiServerSANs(lab),
      usages: ["server"],
      nodes: cpOnly,
      readBy: ["kube-apiserver"],
    },
    // For logs, exec and port-forward the API server calls the kubelets; system:masters may do that.
    client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", cpOnly, ["kube-apiserver"], "system:masters"),
    // The system:kube-* user names are the ones the default RBAC roles are bound to.
    client("controller-manager", "system:kube-controller-manager", cpOnly, ["kube-controller-manager"]),
    client("scheduler", "system:kube-scheduler", cpOnly, ["kube-scheduler"]),
    // The Node authorizer accepts a kubelet as system:node:<name> in group system:nodes, and lets it
    // touch only its own Node and the pods bound to it. The same certificate serves kubelet's port 10250.
    ...lab.nodes.map<CertSpec>((n) => ({
      name: `kubelet-${n.name}`,
      commonName: `system:node:${n.name}`,
      ca: CA.kubernetes,
      organization: "system:nodes",
      dns: [n.name],
      ips: [n.address],
      usages: ["server", "client"],
      nodes: [n.name],
      readBy: ["kubelet"],
    })),
    client(
      "kube-proxy",
      "system:kube-proxy",
      lab.nodes.map((n) => n.name),
      ["kube-proxy"],
      "system:node-proxier",
    ),
    // The admin user stays on the host running k8slab (kubeconfig output); it is never copied to a node.
    client("admin", "admin", [], [], CLUSTER_ADMINS_GROUP),
    // Break-glass (kubeadm's super-admin.conf): system:masters passes every authorizer; kept on the host; k8slab
    // uses it only for the binding that makes the admin group cluster-admin.
    client("super-admin", "kubernetes-super-admin", [], [], "system:masters"),
    // The ingress controller's API adapter serves on the node's loopback inside its pod; it reaches
    // the pod as a Secret, not as a node file.
    {
      name: "ingress-adapter",
      commonName: "ingress-adapter",
      ca: CA.kubernetes,
      dns: ["localhost"],
      ips: ["127.0.0.1"],
      usages: ["server"],
      nodes: [],
      readBy: [],
    },
  ];
}

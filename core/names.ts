// Every name a lab has, defined once: on the host (namespace, bridge, taps), on the nodes (NIC,
// flannel's device) and in the cluster (namespaces, labels, Services). The Pulumi tiers create
// these objects, the probes look for them, the machine layer and the tests use the same names.
import { createHash } from "node:crypto";

/** The Kubernetes limit on a label (a Service or namespace name): RFC 1123, 63 characters. */
export const DNS_LABEL_MAX = 63;

/** The host network namespace that holds a lab's LAN (bridge, taps, the outside client). */
export const netnsOf = (lab: string) => `k8slab-${lab}`;
/** /run/netns/NAME: the machine layer accepts at most 64 characters, so a lab name at most 57. */
export const NETNS_MAX = 64;

/** The bridge inside the lab's namespace that the nodes' taps plug into (its name is private to the namespace). */
export const LAN_BRIDGE = "lan0";

/** A Linux interface name: at most 15 bytes (IFNAMSIZ less the NUL). */
export const IFNAME_MAX = 15;

/** The VM's tap in the lab namespace: tap-<node>, or a hash when that would pass IFNAME_MAX. */
export function tapOf(node: string): string {
  return node.length <= IFNAME_MAX - 4 ? `tap-${node}` : `tap-${createHash("sha256").update(node).digest("hex").slice(0, 11)}`;
}

/**
 * A container node's name on the host. LXC names its cgroups lxc.payload.<name> at the root of every
 * host hierarchy, so the name must be unique on the host, not only in the lab: k8slab-<lab>.<node>
 * (a dot is in no lab or node name, so lab "a-b" node "c" and lab "a" node "b-c" differ), or a hash of
 * both past CONTAINER_NAME_MAX.
 */
export function containerOf(lab: string, node: string): string {
  const name = `k8slab-${lab}.${node}`;
  return name.length <= CONTAINER_NAME_MAX ? name : `k8slab-${createHash("sha256").update(`${lab}/${node}`).digest("hex").slice(0, 16)}`;
}
/** Well inside LXC's limits (its control socket path and cgroup names), and readable in `ls /sys/fs/cgroup/memory`. */
export const CONTAINER_NAME_MAX = 64;

/** A container node's veth in the lab namespace (the node's end is eth0): ct-<node>, or a hash past IFNAME_MAX. */
export function vethOf(node: string): string {
  return node.length <= IFNAME_MAX - 3 ? `ct-${node}` : `ct-${createHash("sha256").update(node).digest("hex").slice(0, 12)}`;
}

/** The nodes' LAN NIC (the node image boots with net.ifnames=0); VXLAN packets cross it. */
export const UNDERLAY_NIC = "eth0";

/** flanneld names its VXLAN device after the VNI (flannel.<VNI>): it is derived, never chosen. */
export const flannelDevice = (vni: number) => `flannel.${vni}`;

/**
 * What each flannel backend puts on a node: its device (none for host-gw: plain routes), the bytes its
 * encapsulation adds to a packet (the pods' MTU is the LAN's less these), and its default UDP port.
 */
export const FLANNEL_BACKENDS = {
  vxlan: {
    overhead: 50,
    defaultPort: 8472,
    device: (vni: number): string | undefined => flannelDevice(vni),
    programs: "the VXLAN device, routes, ARP and FDB entries",
  },
  udp: {
    overhead: 28,
    defaultPort: 8285,
    device: (_vni: number): string | undefined => "flannel0",
    programs: "flannel0 (a TUN device it reads and writes) and the route to the pod network through it",
  },
  "host-gw": {
    overhead: 0,
    defaultPort: undefined,
    device: (_vni: number): string | undefined => undefined,
    programs: "a route to each peer's pod subnet via that node's LAN address",
  },
} as const;
export type FlannelBackend = keyof typeof FLANNEL_BACKENDS;

/** kubeadm's group for the everyday admin: cluster-admin through a ClusterRoleBinding, so RBAC can revoke it. */
export const CLUSTER_ADMINS_GROUP = "kubeadm:cluster-admins";

/** Where flanneld keeps its network config and subnet leases in etcd (its default prefix). */
export const FLANNEL_ETCD_PREFIX = "/coreos.com/network";

/**
 * etcd's users, named by the CN of the certificate each presents (etcd's CN-based auth). The API
 * server has etcd's root role; flannel a role on its own prefix only, so a node's flannel key cannot
 * read /registry. etcd wants a `root` user before it turns auth on.
 */
export const ETCD_USERS = { root: "root", apiServer: "kube-apiserver-etcd-client", flannel: "flannel" } as const;
export const FLANNEL_ETCD_ROLE = "flannel";

/** The label every workload, the toolbox and the ingress controller select their pods by. */
export const appLabels = (name: string) => ({ app: name });
/** The same label as a kubectl selector. */
export const appSelector = (name: string) => `app=${name}`;

/** The workloads' namespace. */
export const WORKLOAD_NAMESPACE = "default";
/** data-product's second Service: DNS answers it with every ready pod's IP. */
export const headlessService = (name: string) => `${name}-headless`;
/** Service names the cluster itself owns in the workloads' namespace: no workload may take one. */
export const RESERVED_WORKLOAD_NAMES = ["kubernetes"] as const;

/** The probe pods: a DaemonSet, so every node has one pod to send from and to. They run `sleep infinity`. */
export const TOOLBOX = {
  namespace: "k8slab-probe",
  daemonSet: "toolbox",
  image: "toolbox",
  selector: appSelector("toolbox"),
  labels: appLabels("toolbox"),
} as const;

/** CoreDNS, under the names every Kubernetes DNS client and tool expects. */
export const CLUSTER_DNS = {
  namespace: "kube-system",
  deployment: "coredns",
  service: "kube-dns",
  /** Two: one may be rescheduled while the other answers. */
  replicas: 2,
  labels: { "k8s-app": "kube-dns" },
  selector: "k8s-app=kube-dns",
} as const;

/** The ingress controller: a DaemonSet with hostNetwork, listening on port 80 of the node it runs on. */
export const INGRESS_CONTROLLER = { namespace: "nginx-ingress", name: "nginx-ingress", labels: appLabels("nginx-ingress"), port: 80 } as const;

/**
 * Pod Security Admission labels for a namespace: `level` enforced, and warnings and audit
 * annotations for anything below `restricted`, so a learner sees what would not pass.
 */
export const podSecurity = (level: "privileged" | "baseline" | "restricted") => ({
  "pod-security.kubernetes.io/enforce": level,
  "pod-security.kubernetes.io/warn": "restricted",
  "pod-security.kubernetes.io/audit": "restricted",
});

/**
 * What the restricted Pod Security profile asks of a pod, met by CoreDNS and the workloads: no root,
 * no privilege escalation, no capabilities, the runtime's seccomp profile, a read-only root. A port
 * below 1024 (DNS 53, HTTP 80) is opened to the pod's non-root user by a sysctl of its own network
 * namespace, one of the sysctls Kubernetes counts as safe.
 */
export const RESTRICTED = {
  pod: (lowPorts: boolean) => ({
    runAsNonRoot: true,
    runAsUser: 65534,
    runAsGroup: 65534,
    seccompProfile: { type: "RuntimeDefault" },
    ...(lowPorts ? { sysctls: [{ name: "net.ipv4.ip_unprivileged_port_start", value: "0" }] } : {}),
  }),
  container: () => ({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } }),
};

/** The taint a node without the worker role carries: only control-plane pods (and DaemonSets that tolerate it) run there. */
export const CONTROL_PLANE_TAINT = { key: "node-role.kubernetes.io/control-plane", effect: "NoSchedule" } as const;

/**
 * The filesystem label of the disk a VM gets with the lab's images already unpacked (scripts/images/store.ts); the
 * node mounts it at /var/lib/containerd by this label, whatever device name it has.
 */
export const CONTAINERD_STORE_LABEL = "k8slab-ctrd";

/** The read-only disk with the bundle's node binaries (scripts/toolchain/bundle-disk.ts), found by this label. */
export const BUNDLE_DISK_LABEL = "k8slab-bundle";

// The lab file's shape: a strict zod schema (unknown keys are errors), with defaults and field formats.
import { z } from "zod";
import { IFNAME_MAX } from "./names.ts";
import { cidrProblem, parseAddress } from "./net.ts";

export const ipv4 = z.string().refine((s) => parseAddress(s) !== undefined, {
  error: (iss) => `"${String(iss.input)}" is not an IPv4 address (a.b.c.d)`,
});

const cidr = z.string().check((ctx) => {
  const problem = cidrProblem(ctx.value);
  if (problem) ctx.issues.push({ code: "custom", message: problem, input: ctx.value });
});

export const port = z.int().min(1).max(65535);

// RFC 1123 label: what Kubernetes accepts as a node or Service name.
export const dnsLabel = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, "must be a lowercase RFC 1123 label (a-z, 0-9, '-')");

// A DNS name (RFC 1123): labels of at most 63, at most 253 in all, and not an IP address (its last label has a letter).
const dnsName = z
  .string()
  .max(253, "must be a DNS name of at most 253 characters")
  .regex(
    /^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/,
    "must be a lowercase DNS name (labels of a-z, 0-9, '-', at most 63 each)",
  )
  .refine((s) => /[a-z]/.test(s.split(".").pop() ?? ""), "must be a DNS name, not an IP address (its last label needs a letter)");

/** What ssh is given as a host: an IPv4 address or a host name, never something it could read as an option. */
export const sshHost = z
  .string()
  .max(253)
  .refine((s) => parseAddress(s) !== undefined || /^([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$/.test(s), {
    error: (iss) => `"${String(iss.input)}" is not an IPv4 address or a host name`,
  });

/** A login name as useradd accepts it (NAME_REGEX's default). */
export const sshUser = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, "must be a user name (a-z, 0-9, '_', '-', at most 32, not starting with a digit or '-')");

/** host:port, as a client dials it. */
const hostPort = z.string().check((ctx) => {
  const m = /^(.+):(\d{1,5})$/.exec(ctx.value);
  const problem = !m
    ? "must be host:port, e.g. 192.168.0.21:6443"
    : !sshHost.safeParse(m[1]).success
      ? `"${m[1]}" is not an IPv4 address or a host name`
      : Number(m[2]) < 1 || Number(m[2]) > 65535
        ? `port ${m[2]} is outside 1-65535`
        : undefined;
  if (problem) ctx.issues.push({ code: "custom", message: problem, input: ctx.value });
});

const sshEndpoint = z.strictObject({
  host: sshHost.describe("Address or name the host running k8slab reaches the node's sshd at."),
  port: port.default(22),
  user: sshUser.default("root"),
  keyFile: z
    .string()
    .min(1)
    .regex(/^[^\0\n]+$/, "must be a file path")
    .describe("Private key file; relative paths are taken from the lab file's folder."),
});

/** A Linux interface name (IFNAME_MAX bytes). */
export const ifName = z.string().regex(new RegExp(`^[A-Za-z0-9_.-]{1,${IFNAME_MAX}}$`), `an interface name of at most ${IFNAME_MAX} characters`);
/** What QEMU is given; the machine layer accepts the same. */
export const cpus = z.int().min(1).max(64);
export const memoryMiB = z.int().min(512, "at least 512 MiB: less does not boot a node").max(262144, "at most 262144 MiB (256 GiB)");

const node = z.strictObject({
  name: dnsLabel.describe("Host name and Kubernetes Node name."),
  address: ipv4.describe("The node's address on the lab LAN."),
  roles: z
    .array(z.enum(["control-plane", "worker"]))
    .min(1)
    .describe("control-plane runs etcd, kube-apiserver, controller-manager and scheduler."),
  cpus: cpus.default(2),
  memoryMiB: memoryMiB.default(2048),
  ssh: sshEndpoint.optional().describe("Only with driver kind ssh: how to reach an existing host."),
});

// The drivers that create the nodes themselves (VMs, system containers) share these fields: the host reaches
// the nodes only through forwards to its loopback, since the lab LAN lives in its own network namespace.
const ownedNodeFields = {
  sshPortBase: port.default(2221).describe("Node i (0-based, in file order) has its sshd forwarded to 127.0.0.1:(sshPortBase + i)."),
  apiServerPort: port.default(16443).describe("The control plane's kube-apiserver is forwarded to 127.0.0.1:apiServerPort."),
};

const qemuDriver = z.strictObject({ kind: z.literal("qemu"), ...ownedNodeFields });

/** Privileged LXC system containers on the host's kernel: no VM, so cpus and memoryMiB are limits, not reservations. */
const containerDriver = z.strictObject({ kind: z.literal("container"), ...ownedNodeFields });

const sshDriver = z.strictObject({
  kind: z.literal("ssh"),
  apiServerEndpoint: hostPort.optional().describe("host:port at which this machine reaches kube-apiserver; default: the control-plane node's address:6443."),
});

export const labFileSchema = z.strictObject({
  name: dnsLabel.describe("Names the lab's network namespace (k8slab-NAME) and its Pulumi stack."),
  driver: z.discriminatedUnion("kind", [qemuDriver, containerDriver, sshDriver]).default({ kind: "qemu", sshPortBase: 2221, apiServerPort: 16443 }),
  lan: z.strictObject({
    cidr: cidr.describe("The underlay: the network the nodes share."),
    gateway: ipv4.describe("The lab bridge's address; it is also the outside client for NodePort and ingress probes."),
    mtu: z.int().min(1280).max(9000).default(1500),
  }),
  nodes: z.array(node).min(1),
  pods: z.strictObject({
    cidr: cidr.describe("The whole pod network; flannel hands each node one subnet of it."),
    nodeSubnetPrefix: z.int().min(16).max(28).default(24),
    bridge: z.enum(["cni0", "docker0"]).default("cni0").describe("The Linux bridge pods attach to on each node."),
    flannel: z.strictObject({
      backend: z
        .enum(["vxlan", "host-gw", "udp"])
        .describe(
          "vxlan: flannel.<VNI> in the kernel, UDP 8472; host-gw: a route per peer via its LAN address, no encapsulation; udp: flannel0 (TUN), every packet through flanneld, UDP 8285.",
        ),
      vni: z.int().min(1).max(16777215).optional().describe("vxlan only; default 1."),
      port: port.optional().describe("vxlan and udp: the encapsulation's UDP port; default 8472 (vxlan), 8285 (udp)."),
    }),
  }),
  services: z.strictObject({
    cidr: cidr.describe("The Service (ClusterIP) range; its first address is the kubernetes Service."),
    dnsIP: ipv4.describe("CoreDNS's ClusterIP; kubelet writes it into every pod's resolv.conf."),
    clusterDomain: dnsName.default("cluster.local"),
    nodePortRange: z
      .string()
      .regex(/^\d+-\d+$/, "must be FROM-TO, e.g. 30000-32767")
      .default("30000-32767"),
    kubeProxyMode: z
      .enum(["iptables", "ipvs", "nftables"])
      .default("iptables")
      .describe("How kube-proxy programs Services: iptables DNAT chains, IPVS virtual servers (kube-ipvs0), or an nftables table."),
  }),
  ingress: z.strictObject({
    className: dnsLabel.default("nginx"),
    hostNetwork: z.boolean().default(true).describe("The controller binds ports 80/443 on the node itself."),
    host: dnsName.describe("The virtual host routed to the backend Service."),
    service: dnsLabel.describe("The Service the ingress routes to; must be one of the workloads."),
  }),
  workloads: z.strictObject({
    dataProduct: z.strictObject({
      name: dnsLabel.default("data-product"),
      replicas: z.int().min(1).max(20),
      port: port.describe("gRPC port of the pods and of the ClusterIP Service."),
    }),
    businessManager: z.strictObject({
      name: dnsLabel.default("business-manager"),
      replicas: z.int().min(1).max(20),
      port: port.describe("HTTP port of the pods and of the ClusterIP Service."),
      nodePort: port.describe("The NodePort every node opens for business-manager."),
    }),
  }),
});

/** A lab file as written, after defaults. */
export type LabFile = z.output<typeof labFileSchema>;
export type LabFileNode = LabFile["nodes"][number];
export type Driver = LabFile["driver"];
/** A driver whose nodes k8slab creates, runs and removes itself (qemu VMs, LXC containers). */
export type OwnedDriver = Extract<Driver, { kind: "qemu" | "container" }>;

/**
 * Does k8slab own this lab's machines? Then it owns the LAN namespace, the loopback forwards, the
 * node image, preflight and `down`; an ssh lab's hosts exist before and after k8slab.
 */
export function ownsMachines<T extends { driver: Driver }>(lab: T): lab is T & { driver: OwnedDriver } {
  return lab.driver.kind === "qemu" || lab.driver.kind === "container";
}

// What runs on every node: containerd, the CNI config, kubelet, flanneld and kube-proxy.
import type { Lab, LabNode } from "../../core/index.ts";
import { CONTAINERD_STORE_LABEL, FLANNEL_BACKENDS, FLANNEL_ETCD_PREFIX } from "../../core/names.ts";
import { CA, caCert, configPath, ETCD_CLIENT_CERT, etcdEndpoint, kubeconfigPath, NODE_PATHS, pki } from "../../core/node.ts";
import { TLS_CIPHER_SUITES } from "./controlplane.ts";
import { renderUnit } from "./systemd.ts";

/** containerd's CRI config; `pauseImage` is the sandbox image, built offline and loaded, never pulled. */
export function renderContainerdConfig(lab: Lab, pauseImage: string): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return [
    "version = 2",
    "",
    `[${cri}]`,
    `  sandbox_image = "${pauseImage}"`,
    ...(lab.driver.kind === "container"
      ? [
          "  # A container node has no CAP_SYS_RESOURCE: runc cannot lower a pod's oom_score_adj below",
          "  # containerd's own (kubelet asks -998), and without this every pod fails to start.",
          "  restrict_oom_score_adj = true",
        ]
      : []),
    "",
    `[${cri}.containerd.runtimes.runc]`,
    '  runtime_type = "io.containerd.runc.v2"',
    "",
    `[${cri}.containerd.runtimes.runc.options]`,
    "  # kubelet uses the systemd cgroup driver; both must agree.",
    "  SystemdCgroup = true",
    "",
    `[${cri}.cni]`,
    `  bin_dir = "${NODE_PATHS.cniBin}"`,
    `  conf_dir = "${NODE_PATHS.cniConf}"`,
    "",
  ].join("\n");
}

/**
 * A VM made with the containerd store (scripts/images/store.ts) mounts it at /var/lib/containerd before containerd
 * starts: every image is there, unpacked. Without the disk (a VM made before the store, no store built) containerd
 * keeps its root disk's folder and the images are imported instead; a disk that is there but fails to mount fails
 * containerd, loudly.
 */
export function renderContainerdStoreDropIn(): string {
  const dir = "/var/lib/containerd";
  return [
    "# k8slab: the lab's images, unpacked on the host into a disk this VM attaches",
    "[Service]",
    `ExecStartPre=/bin/sh -c 'mountpoint -q ${dir} || ! blkid -L ${CONTAINERD_STORE_LABEL} >/dev/null || { mkdir -p ${dir} && mount -o noatime LABEL=${CONTAINERD_STORE_LABEL} ${dir}; }'`,
    "",
  ].join("\n");
}

/**
 * The CNI chain kubelet (through containerd) runs for every pod: the flannel plugin reads this
 * node's subnet from flanneld's subnet file and hands off to the bridge plugin, which creates the
 * veth pair, plugs it into the bridge and assigns an address with host-local IPAM.
 */
export function renderCniConfig(lab: Lab): string {
  const conf = {
    name: "k8slab",
    // The flannel plugin (v0.9.1 of the reference plugins, the newest the module proxy serves) speaks CNI up to 0.4.0.
    cniVersion: "0.4.0",
    plugins: [
      {
        type: "flannel",
        subnetFile: NODE_PATHS.flannelSubnetFile,
        delegate: {
          bridge: lab.pods.bridge,
          isDefaultGateway: true,
          // A pod reaching a Service that lands on itself goes out and back through the same bridge port.
          hairpinMode: true,
        },
      },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  };
  return `${JSON.stringify(conf, null, 2)}\n`;
}

export function renderKubeletConfig(lab: Lab, node: LabNode): string {
  return [
    "apiVersion: kubelet.config.k8s.io/v1beta1",
    "kind: KubeletConfiguration",
    "authentication:",
    "  anonymous:",
    "    enabled: false",
    "  webhook:",
    "    enabled: true",
    "  x509:",
    `    clientCAFile: ${caCert(CA.kubernetes)}`,
    "authorization:",
    "  mode: Webhook",
    "tlsMinVersion: VersionTLS12",
    `tlsCipherSuites: [${TLS_CIPHER_SUITES.split(",").join(", ")}]`,
    // No unauthenticated read-only port (CIS 4.2.4), stated rather than left to the default.
    "readOnlyPort: 0",
    `clusterDomain: ${lab.services.clusterDomain}`,
    "clusterDNS:",
    `  - ${lab.services.dnsIP}`,
    "cgroupDriver: systemd",
    `containerRuntimeEndpoint: unix://${NODE_PATHS.containerdSocket}`,
    `tlsCertFile: ${pki(`kubelet-${node.name}.crt`)}`,
    `tlsPrivateKeyFile: ${pki(`kubelet-${node.name}.key`)}`,
    "resolvConf: /etc/resolv.conf",
    "failSwapOn: false",
    // Images are loaded offline and cannot be pulled again: never garbage-collect them.
    "imageGCHighThresholdPercent: 100",
    "imageGCLowThresholdPercent: 99",
    // Emulated CPUs are slow to start containers; give the runtime time before calling it failed.
    "runtimeRequestTimeout: 10m",
    "",
  ].join("\n");
}

export function renderKubeletUnit(node: LabNode): string {
  return renderUnit({
    description: `kubelet on ${node.name}: runs the pods the scheduler assigns here`,
    documentation: "https://kubernetes.io/docs/reference/command-line-tools-reference/kubelet/",
    after: ["containerd.service", "flanneld.service"],
    requires: ["containerd.service"],
    exec: [
      `${NODE_PATHS.bin}/kubelet`,
      `--config=${configPath("kubelet.yaml")}`,
      `--kubeconfig=${kubeconfigPath("kubelet")}`,
      `--hostname-override=${node.name}`,
      // The VM has a second, management NIC: the node's address must be the LAN one.
      `--node-ip=${node.address}`,
      // cAdvisor's stats of every container every 10 s were a tenth of an idle kubelet's CPU under TCG.
      "--housekeeping-interval=30s",
    ],
    go: true,
  });
}

/** The unit that keeps the kernel's packet timestamping on (NodeAgents starts it before containerd). */
export const NETSTAMP_UNIT = "k8slab-netstamp";

/**
 * Holds one socket with SO_TIMESTAMP open for the node's lifetime. Every ping and tcpdump turns
 * the kernel's timestamp switch (a static key) on and off when it is the only user, and each flip
 * patches kernel code live with int3 breakpoints. Under QEMU's multi-threaded TCG that patching
 * races with the other vCPU: node1 once died with "Oops: int3" in netif_receive_skb_list_internal
 * during a probe run. With this socket open the switch stays on and nothing is patched.
 */
export function renderNetstampUnit(node: LabNode): string {
  return renderUnit({
    description: `packet timestamping held on for ${node.name} (so ping and tcpdump do not patch kernel code under TCG)`,
    documentation: "man:socket(7) SO_TIMESTAMP",
    exec: ["/usr/bin/socat", "-u", "UDP4-RECV:9,bind=127.0.0.1,so-timestamp", "OPEN:/dev/null"],
  });
}

/** flanneld's subnet file as flanneld writes it; seeded so flanneld reacquires the lab's subnet for this node. */
export function renderFlannelSubnetFile(lab: Lab, node: LabNode): string {
  const gateway = node.podSubnet.replace(/\.0\/(\d+)$/, ".1/$1");
  return [`FLANNEL_NETWORK=${lab.pods.cidr}`, `FLANNEL_SUBNET=${gateway}`, `FLANNEL_MTU=${lab.pods.mtu}`, "FLANNEL_IPMASQ=true", ""].join("\n");
}

export function renderFlanneldUnit(lab: Lab, node: LabNode): string {
  const subnetFile = NODE_PATHS.flannelSubnetFile;
  return renderUnit({
    description: `flanneld on ${node.name}: leases this node's pod subnet in etcd and programs ${FLANNEL_BACKENDS[lab.pods.flannel.backend].programs}`,
    documentation: "https://github.com/flannel-io/flannel/blob/master/Documentation/configuration.md",
    after: ["network-online.target"],
    // flanneld reuses the subnet named in an existing subnet file when it is free: that makes the
    // lab's derived subnet (node index -> /24) the one it leases.
    execStartPre: [
      `/bin/sh -c 'mkdir -p ${subnetFile.replace(/\/[^/]+$/, "")} && test -s ${subnetFile} || cp ${configPath("flannel-subnet.env")} ${subnetFile}'`,
      // flanneld names its VXLAN device after the VNI: after a VNI or backend change the old device would
      // stay, with stale neighbour and FDB entries beside the new one. ($$ is a literal $ for systemd.)
      `/bin/sh -c 'for d in /sys/class/net/flannel.*; do d=$\${d##*/}; [ "$$d" = "flannel.*" ] || [ "$$d" = "${lab.pods.flannel.device ?? ""}" ] || ip link delete "$$d" || true; done'`,
    ],
    exec: [
      `${NODE_PATHS.bin}/flanneld`,
      `--etcd-endpoints=${etcdEndpoint(lab)}`,
      `--etcd-prefix=${FLANNEL_ETCD_PREFIX}`,
      `--etcd-cafile=${caCert(CA.etcd)}`,
      `--etcd-certfile=${pki(`${ETCD_CLIENT_CERT.flannel}.crt`)}`,
      `--etcd-keyfile=${pki(`${ETCD_CLIENT_CERT.flannel}.key`)}`,
      // The LAN address picks the underlay interface (not the management NIC).
      `--iface=${node.address}`,
      "--ip-masq",
      // Its iptables rules are checked every 5 s by default, an iptables process per rule: under TCG
      // two thirds of an idle node's CPU went there. A rule removed by hand comes back within a minute.
      "--iptables-resync=60",
      `--subnet-file=${subnetFile}`,
    ],
    service: ["Type=notify"],
    go: true,
  });
}

export function renderKubeProxyConfig(lab: Lab, node: LabNode): string {
  return [
    "apiVersion: kubeproxy.config.k8s.io/v1alpha1",
    "kind: KubeProxyConfiguration",
    "clientConnection:",
    `  kubeconfig: ${kubeconfigPath("kube-proxy")}`,
    `mode: ${lab.services.kubeProxyMode}`,
    ...(lab.services.kubeProxyMode === "ipvs"
      ? // Round robin, so the probes' requests visibly spread; strictARP keeps kube-ipvs0's addresses from answering ARP on the LAN.
        ["ipvs:", "  scheduler: rr", "  strictARP: true"]
      : []),
    // Traffic from outside this range to a ClusterIP is masqueraded, so replies come back through this node.
    `clusterCIDR: ${lab.pods.cidr}`,
    `hostnameOverride: ${node.name}`,
    // NodePorts answer on the lab LAN address, where the outside client comes from.
    "nodePortAddresses:",
    `  - ${lab.lan.cidr}`,
    // A container node shares the host's conntrack table, whose size only the host's own network
    // namespace may set: 0 leaves nf_conntrack_max as it is (kube-proxy otherwise exits on EACCES).
    ...(lab.driver.kind === "container" ? ["conntrack:", "  maxPerCore: 0"] : []),
    "",
  ].join("\n");
}

/** What kube-proxy makes of a Service, by mode. */
const KUBE_PROXY_DOES = {
  iptables: "iptables DNAT rules (KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-*)",
  ipvs: "IPVS virtual servers on kube-ipvs0, with their pods as real servers",
  nftables: "an nftables table (ip kube-proxy): a verdict map from ClusterIP:port to a per-Service chain",
} as const;

export function renderKubeProxyUnit(lab: Lab, node: LabNode): string {
  return renderUnit({
    description: `kube-proxy on ${node.name}: turns Services into ${KUBE_PROXY_DOES[lab.services.kubeProxyMode]}`,
    documentation: "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-proxy/",
    after: ["network-online.target"],
    exec: [`${NODE_PATHS.bin}/kube-proxy`, `--config=${configPath("kube-proxy.yaml")}`],
    go: true,
  });
}

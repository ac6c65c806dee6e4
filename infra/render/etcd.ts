// etcd on the control-plane node, and the flannel network config it stores.
import type { Lab } from "../../core/index.ts";
import { ETCD_CLIENT_PORT, ETCD_PEER_PORT, etcdEndpoint, NODE_PATHS, pki } from "../../core/node.ts";
import { renderUnit } from "./systemd.ts";

export function renderEtcdUnit(lab: Lab): string {
  const node = lab.controlPlane;
  const peer = `https://${node.address}:${ETCD_PEER_PORT}`;
  return renderUnit({
    description: "etcd: the cluster's key-value store (Kubernetes objects and flannel's subnet leases)",
    documentation: "https://etcd.io/docs/",
    after: ["network-online.target"],
    exec: [
      `${NODE_PATHS.bin}/etcd`,
      `--name=${node.name}`,
      `--data-dir=${NODE_PATHS.etcdData}`,
      `--listen-client-urls=${etcdEndpoint(lab)},https://127.0.0.1:${ETCD_CLIENT_PORT}`,
      `--advertise-client-urls=${etcdEndpoint(lab)}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=${node.name}=${peer}`,
      "--initial-cluster-state=new",
      `--initial-cluster-token=k8slab-${lab.name}`,
      `--cert-file=${pki("etcd-server.crt")}`,
      `--key-file=${pki("etcd-server.key")}`,
      `--trusted-ca-file=${pki("ca.crt")}`,
      "--client-cert-auth=true",
      `--peer-cert-file=${pki("etcd-peer.crt")}`,
      `--peer-key-file=${pki("etcd-peer.key")}`,
      `--peer-trusted-ca-file=${pki("ca.crt")}`,
      "--peer-client-cert-auth=true",
      // Emulated CPUs (TCG) are slow: wider heartbeat and election windows keep the leader stable.
      "--heartbeat-interval=500",
      "--election-timeout=5000",
    ],
    service: ["Type=notify", "LimitNOFILE=20000"],
    go: true,
  });
}

/** flannel's network config, stored at <prefix>/config: the pod network and the VXLAN backend. */
export function renderFlannelNetConf(lab: Lab): string {
  const { cidr, nodeSubnetPrefix, flannel } = lab.pods;
  return `${JSON.stringify({ Network: cidr, SubnetLen: nodeSubnetPrefix, Backend: { Type: flannel.backend, VNI: flannel.vni, Port: flannel.port } }, null, 2)}\n`;
}

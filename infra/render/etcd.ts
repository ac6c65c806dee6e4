// etcd on the control-plane node, and the flannel network config it stores.
import type { Lab } from "../../core/index.ts";
import { ETCD_USERS, FLANNEL_ETCD_PREFIX, FLANNEL_ETCD_ROLE } from "../../core/names.ts";
import { CA, caCert, ETCD_CLIENT_CERT, ETCD_CLIENT_PORT, ETCD_PEER_PORT, etcdctlCommand, etcdEndpoint, NODE_PATHS, pki } from "../../core/node.ts";
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
      `--trusted-ca-file=${caCert(CA.etcd)}`,
      "--client-cert-auth=true",
      `--peer-cert-file=${pki("etcd-peer.crt")}`,
      `--peer-key-file=${pki("etcd-peer.key")}`,
      `--peer-trusted-ca-file=${caCert(CA.etcd)}`,
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
  // Each backend reads only its own keys: vxlan VNI and Port, udp Port, host-gw none.
  const backend = {
    Type: flannel.backend,
    ...(flannel.backend === "vxlan" ? { VNI: flannel.vni } : {}),
    ...(flannel.port !== undefined ? { Port: flannel.port } : {}),
  };
  return `${JSON.stringify({ Network: cidr, SubnetLen: nodeSubnetPrefix, Backend: backend }, null, 2)}\n`;
}

/**
 * Turns on etcd's auth (CN-based: each client is the user its certificate names) with flannel confined
 * to its prefix. Idempotent: etcd ignores a role granted twice and `auth enable` when auth is on. Runs
 * as the API server's client (before auth any etcd-CA client may; after, that one has the root role).
 */
export function renderEtcdAuthScript(lab: Lab): string {
  const e = etcdctlCommand(lab, ETCD_CLIENT_CERT.apiServer);
  const grants: [string, string][] = [
    [ETCD_USERS.root, "root"],
    [ETCD_USERS.apiServer, "root"],
    [ETCD_USERS.flannel, FLANNEL_ETCD_ROLE],
  ];
  return [
    "set -e",
    `${e} role get ${FLANNEL_ETCD_ROLE} >/dev/null 2>&1 || ${e} role add ${FLANNEL_ETCD_ROLE} >/dev/null`,
    `${e} role grant-permission --prefix=true ${FLANNEL_ETCD_ROLE} readwrite ${FLANNEL_ETCD_PREFIX}/ >/dev/null`,
    ...grants.flatMap(([user, role]) => [
      `${e} user get ${user} >/dev/null 2>&1 || ${e} user add ${user} --no-password >/dev/null`,
      `${e} user grant-role ${user} ${role} >/dev/null`,
    ]),
    `${e} auth enable >/dev/null`,
    "",
  ].join("\n");
}

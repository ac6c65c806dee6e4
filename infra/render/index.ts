// Every plain-text file a node receives, rendered from the Lab. Remote steps only copy these and start units.
import type { Lab, LabNode } from "../../core/index.ts";
import { configPath, NODE_PATHS } from "../../core/node.ts";
import {
  renderApiServerUnit,
  renderAuditPolicy,
  renderAuthenticationConfig,
  renderControllerManagerUnit,
  renderSchedulerConfig,
  renderSchedulerUnit,
} from "./controlplane.ts";
import { renderEtcdUnit, renderFlannelNetConf } from "./etcd.ts";
import {
  NETSTAMP_UNIT,
  renderCniConfig,
  renderContainerdConfig,
  renderContainerdStoreDropIn,
  renderFlanneldUnit,
  renderFlannelSubnetFile,
  renderKubeletConfig,
  renderKubeletUnit,
  renderKubeProxyConfig,
  renderKubeProxyUnit,
  renderNetstampUnit,
} from "./node.ts";

export interface NodeFile {
  path: string;
  content: string;
  /**
   * The units that read it: each restarts when, and only when, a file it reads changes. Empty for a
   * file read afresh on every use (the CNI config: the runtime reads it for each pod).
   */
  readBy: string[];
}

/** A systemd unit file: read by its own unit. */
const unitFile = (name: string, content: string): NodeFile => ({ path: `${NODE_PATHS.units}/${name}.service`, content, readBy: [name] });

/** The flannel network config the Etcd tier stores in etcd; every node's flanneld reads it there. */
export function flannelNetConfFile(lab: Lab): NodeFile {
  return { path: configPath("flannel-net-conf.json"), content: renderFlannelNetConf(lab), readBy: ["flanneld"] };
}

/** Etcd tier, control-plane node: the etcd unit and the flannel network config it will store. */
export function etcdFiles(lab: Lab): NodeFile[] {
  return [unitFile("etcd", renderEtcdUnit(lab)), flannelNetConfFile(lab)];
}

/** ControlPlane tier: the three control-plane units and their configs. */
export function controlPlaneFiles(lab: Lab): NodeFile[] {
  return [
    { path: configPath("authentication.yaml"), content: renderAuthenticationConfig(), readBy: ["kube-apiserver"] },
    { path: configPath("audit-policy.yaml"), content: renderAuditPolicy(), readBy: ["kube-apiserver"] },
    unitFile("kube-apiserver", renderApiServerUnit(lab)),
    unitFile("kube-controller-manager", renderControllerManagerUnit(lab)),
    { path: configPath("scheduler.yaml"), content: renderSchedulerConfig(), readBy: ["kube-scheduler"] },
    unitFile("kube-scheduler", renderSchedulerUnit()),
  ];
}

/** NodeAgents tier, every node: containerd (with the lab's pause image), the CNI chain, kubelet. */
export function nodeAgentFiles(lab: Lab, node: LabNode, pauseImage: string): NodeFile[] {
  return [
    { path: NODE_PATHS.containerdConfig, content: renderContainerdConfig(lab, pauseImage), readBy: ["containerd"] },
    { path: `${NODE_PATHS.cniConf}/10-k8slab.conflist`, content: renderCniConfig(lab), readBy: [] },
    { path: configPath("kubelet.yaml"), content: renderKubeletConfig(lab, node), readBy: ["kubelet"] },
    unitFile("kubelet", renderKubeletUnit(node)),
    unitFile(NETSTAMP_UNIT, renderNetstampUnit(node)),
    ...(lab.driver.kind === "qemu"
      ? [{ path: `${NODE_PATHS.units}/containerd.service.d/k8slab-store.conf`, content: renderContainerdStoreDropIn(), readBy: ["containerd"] }]
      : []),
  ];
}

/** Flannel tier, every node: flanneld and the subnet it should lease. */
export function flannelFiles(lab: Lab, node: LabNode): NodeFile[] {
  return [
    { path: configPath("flannel-subnet.env"), content: renderFlannelSubnetFile(lab, node), readBy: ["flanneld"] },
    unitFile("flanneld", renderFlanneldUnit(lab, node)),
  ];
}

/** What flanneld on `node` reads: its own files, and the network config (VNI, port) it reads from etcd. */
export function flanneldInputs(lab: Lab, node: LabNode): NodeFile[] {
  return [flannelNetConfFile(lab), ...flannelFiles(lab, node)];
}

/** KubeProxy tier, every node. */
export function kubeProxyFiles(lab: Lab, node: LabNode): NodeFile[] {
  return [
    { path: configPath("kube-proxy.yaml"), content: renderKubeProxyConfig(lab, node), readBy: ["kube-proxy"] },
    unitFile("kube-proxy", renderKubeProxyUnit(lab, node)),
  ];
}

export { ENCRYPTION_CONFIG, renderEncryptionConfig } from "./controlplane.ts";
export { COREDNS_HEALTH_PORT, COREDNS_METRICS_PORT, COREDNS_READY_PORT, DNS_PORT, renderCorefile } from "./coredns.ts";
export { renderEtcdAuthScript } from "./etcd.ts";
export { type KubeconfigSpec, renderKubeconfig } from "./kubeconfig.ts";
export { NETSTAMP_UNIT } from "./node.ts";

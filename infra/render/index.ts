// Every plain-text file a node receives, rendered from the Lab. Remote steps only copy these and start units.
import type { Lab, LabNode } from "../../core/index.js";
import { renderApiServerUnit, renderAuthenticationConfig, renderControllerManagerUnit, renderSchedulerConfig, renderSchedulerUnit } from "./controlplane.js";
import { renderEtcdUnit, renderFlannelNetConf } from "./etcd.js";
import {
  renderCniConfig,
  renderContainerdConfig,
  renderFlanneldUnit,
  renderFlannelSubnetFile,
  renderKubeletConfig,
  renderKubeletUnit,
  renderKubeProxyConfig,
  renderKubeProxyUnit,
  renderNetstampUnit,
  NETSTAMP_UNIT,
} from "./node.js";
import { configPath, NODE_PATHS } from "./paths.js";

export interface NodeFile {
  path: string;
  content: string;
}

const unit = (name: string) => `${NODE_PATHS.units}/${name}.service`;

/** Etcd tier, control-plane node: the etcd unit and the flannel network config it will store. */
export function etcdFiles(lab: Lab): NodeFile[] {
  return [
    { path: unit("etcd"), content: renderEtcdUnit(lab) },
    { path: configPath("flannel-net-conf.json"), content: renderFlannelNetConf(lab) },
  ];
}

/** ControlPlane tier: the three control-plane units and their configs. */
export function controlPlaneFiles(lab: Lab): NodeFile[] {
  return [
    { path: configPath("authentication.yaml"), content: renderAuthenticationConfig() },
    { path: unit("kube-apiserver"), content: renderApiServerUnit(lab) },
    { path: unit("kube-controller-manager"), content: renderControllerManagerUnit(lab) },
    { path: configPath("scheduler.yaml"), content: renderSchedulerConfig() },
    { path: unit("kube-scheduler"), content: renderSchedulerUnit() },
  ];
}

/** NodeAgents tier, every node: containerd (with the lab's pause image), the CNI chain, kubelet. */
export function nodeAgentFiles(lab: Lab, node: LabNode, pauseImage: string): NodeFile[] {
  return [
    { path: NODE_PATHS.containerdConfig, content: renderContainerdConfig(pauseImage) },
    { path: `${NODE_PATHS.cniConf}/10-k8slab.conflist`, content: renderCniConfig(lab) },
    { path: configPath("kubelet.yaml"), content: renderKubeletConfig(lab, node) },
    { path: unit("kubelet"), content: renderKubeletUnit(node) },
    { path: unit(NETSTAMP_UNIT), content: renderNetstampUnit(node) },
  ];
}

/** Flannel tier, every node: flanneld and the subnet it should lease. */
export function flannelFiles(lab: Lab, node: LabNode): NodeFile[] {
  return [
    { path: configPath("flannel-subnet.env"), content: renderFlannelSubnetFile(lab, node) },
    { path: unit("flanneld"), content: renderFlanneldUnit(lab, node) },
  ];
}

/** KubeProxy tier, every node. */
export function kubeProxyFiles(lab: Lab, node: LabNode): NodeFile[] {
  return [
    { path: configPath("kube-proxy.yaml"), content: renderKubeProxyConfig(lab, node) },
    { path: unit("kube-proxy"), content: renderKubeProxyUnit(node) },
  ];
}

/** Every rendered file a node receives, all tiers together. */
export function allNodeFiles(lab: Lab, node: LabNode, pauseImage: string): NodeFile[] {
  const perNode = [...nodeAgentFiles(lab, node, pauseImage), ...flannelFiles(lab, node), ...kubeProxyFiles(lab, node)];
  return node.isControlPlane ? [...etcdFiles(lab), ...controlPlaneFiles(lab), ...perNode] : perNode;
}

export { NETSTAMP_UNIT } from "./node.js";
export { apiServerSANs, apiServerURL, API_SERVER_PORT } from "./controlplane.js";
export { etcdctlCommand, etcdEndpoint, FLANNEL_ETCD_PREFIX } from "./etcd.js";
export { renderKubeconfig, type KubeconfigSpec } from "./kubeconfig.js";
export { configPath, kubeconfigPath, NODE_PATHS, pki } from "./paths.js";
export { renderCorefile, COREDNS_HEALTH_PORT, COREDNS_METRICS_PORT, COREDNS_READY_PORT, DNS_PORT } from "./coredns.js";

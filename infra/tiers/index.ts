// The tiers of a lab, bottom-up, one module each; infra/program.ts fixes their order.

export { ControlPlane } from "./control-plane.js";
export { CoreDns } from "./coredns.js";
export { Etcd } from "./etcd.js";
export { Flannel } from "./flannel.js";
export { Ingress } from "./ingress.js";
export { KubeProxy } from "./kube-proxy.js";
export { Machines } from "./machines.js";
export { NodeAgents } from "./node-agents.js";
export { Pki } from "./pki.js";
export { Workloads } from "./workloads.js";

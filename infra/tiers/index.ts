// The tiers of a lab, bottom-up, one module each; infra/program.ts fixes their order.
export { Machines } from "./machines.js";
export { Pki } from "./pki.js";
export { Etcd } from "./etcd.js";
export { ControlPlane } from "./control-plane.js";
export { NodeAgents } from "./node-agents.js";
export { Flannel } from "./flannel.js";
export { KubeProxy } from "./kube-proxy.js";
export { CoreDns } from "./coredns.js";
export { Ingress } from "./ingress.js";
export { Workloads } from "./workloads.js";

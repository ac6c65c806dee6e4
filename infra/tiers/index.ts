// The tiers of a lab, bottom-up, one module each; infra/program.ts fixes their order.

export { ControlPlane } from "./control-plane.ts";
export { CoreDns } from "./coredns.ts";
export { Etcd } from "./etcd.ts";
export { Flannel } from "./flannel.ts";
export { Ingress } from "./ingress.ts";
export { KubeProxy } from "./kube-proxy.ts";
export { Machines } from "./machines.ts";
export { NodeAgents } from "./node-agents.ts";
export { Pki } from "./pki.ts";
export { Workloads } from "./workloads.ts";

// The tiers of a lab, bottom-up. Each is a shell until its issue lands; the order is the contract.
import type * as pulumi from "@pulumi/pulumi";
import { Tier, type TierArgs } from "../tier.js";

export { Machines } from "./machines.js";
export { Pki } from "./pki.js";
export { Etcd } from "./etcd.js";
export { ControlPlane } from "./control-plane.js";
export { NodeAgents } from "./node-agents.js";
export { Flannel } from "./flannel.js";
export { KubeProxy } from "./kube-proxy.js";

/** CoreDns: cluster DNS at the lab's dnsIP. */
export class CoreDns extends Tier {
  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("CoreDns", name, args, opts);
    this.registerOutputs({});
  }
}

/** Ingress: the NGINX ingress controller on the node's own network, and the lab's Ingress. */
export class Ingress extends Tier {
  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("Ingress", name, args, opts);
    this.registerOutputs({});
  }
}

/** Workloads: business-manager (HTTP) calling data-product (gRPC), with their Services. */
export class Workloads extends Tier {
  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("Workloads", name, args, opts);
    this.registerOutputs({});
  }
}

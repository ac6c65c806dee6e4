// The tiers of a lab, bottom-up. Each is a shell until its issue lands; the order is the contract.
import type * as pulumi from "@pulumi/pulumi";
import { Tier, type TierArgs } from "../tier.js";

export { Machines } from "./machines.js";
export { Pki } from "./pki.js";

/** Etcd: the cluster's store, on the control-plane node, also holding flannel's network config. */
export class Etcd extends Tier {
  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("Etcd", name, args, opts);
    this.registerOutputs({});
  }
}

/** ControlPlane: kube-apiserver, kube-controller-manager and kube-scheduler as systemd units. */
export class ControlPlane extends Tier {
  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("ControlPlane", name, args, opts);
    this.registerOutputs({});
  }
}

/** NodeAgents: containerd, runc, the CNI plugins and kubelet on every node. */
export class NodeAgents extends Tier {
  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("NodeAgents", name, args, opts);
    this.registerOutputs({});
  }
}

/** Flannel: flanneld with the VXLAN backend on every node (flannel.1, routes, FDB and ARP entries). */
export class Flannel extends Tier {
  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("Flannel", name, args, opts);
    this.registerOutputs({});
  }
}

/** KubeProxy: kube-proxy in iptables mode on every node (KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-*). */
export class KubeProxy extends Tier {
  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("KubeProxy", name, args, opts);
    this.registerOutputs({});
  }
}

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

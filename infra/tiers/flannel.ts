// Flannel: flanneld on every node. It leases the node's /24 in etcd and programs the backend's path to each peer
// (vxlan: flannel.1 plus a route, neighbour and FDB entry per peer; host-gw: a route per peer; udp: flannel0).
import type * as pulumi from "@pulumi/pulumi";
import { NODE_PATHS } from "../../core/node.ts";
import { flanneldInputs, flannelFiles } from "../render/index.ts";
import { Tier, type TierArgs } from "../tier.ts";
import { Machines } from "./machines.ts";
import { Pki } from "./pki.ts";
import { nodeFiles, nodeUnits } from "./remote.ts";

export class Flannel extends Tier {
  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("Flannel", name, args, opts);
    const { lab } = args;
    const { device } = lab.pods.flannel;
    const machines = this.below(Machines);
    for (const node of lab.nodes) {
      const connection = machines.connections[node.name];
      const files = flannelFiles(lab, node);
      const written = nodeFiles(`files-${node.name}`, connection, files, this.childOpts());
      nodeUnits(`flanneld-${node.name}`, connection, ["flanneld"], this.childOpts({}, [written]), {
        // The subnet file is written once the lease is held; the backend's device (host-gw has none) once it is up.
        ready: `test -s ${NODE_PATHS.flannelSubnetFile}${device ? ` && ip link show ${device} >/dev/null 2>&1` : ""}`,
        what: `flanneld's lease${device ? ` and ${device}` : ""}`,
        configDigest: this.below(Pki).unitDigest(node.name, "flanneld", flanneldInputs(lab, node)),
      });
    }
    this.registerOutputs({});
  }
}

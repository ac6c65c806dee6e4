// Flannel: flanneld with the VXLAN backend on every node. It leases the node's /24 in etcd and
// programs flannel.1 (VNI, UDP port, MTU), plus one route, one neighbour and one FDB entry per peer.
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
    const machines = this.below(Machines);
    for (const node of lab.nodes) {
      const connection = machines.connections[node.name];
      const files = flannelFiles(lab, node);
      const written = nodeFiles(`files-${node.name}`, connection, files, this.childOpts());
      nodeUnits(`flanneld-${node.name}`, connection, ["flanneld"], this.childOpts({}, [written]), {
        // The subnet file is written once the lease is held; the VTEP exists once the backend is up.
        ready: `test -s ${NODE_PATHS.flannelSubnetFile} && ip link show ${lab.pods.flannel.device} >/dev/null 2>&1`,
        what: `flanneld's lease and ${lab.pods.flannel.device}`,
        configDigest: this.below(Pki).unitDigest(node.name, "flanneld", flanneldInputs(lab, node)),
      });
    }
    this.registerOutputs({});
  }
}

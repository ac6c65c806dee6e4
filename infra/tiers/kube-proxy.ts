// KubeProxy: kube-proxy in iptables mode on every node: Services become KUBE-SERVICES ->
// KUBE-SVC-* -> KUBE-SEP-* DNAT rules in the nat table.
import type * as pulumi from "@pulumi/pulumi";
import { kubeProxyFiles } from "../render/index.ts";
import { Tier, type TierArgs } from "../tier.ts";
import { Machines } from "./machines.ts";
import { Pki } from "./pki.ts";
import { nodeFiles, nodeUnits } from "./remote.ts";

export class KubeProxy extends Tier {
  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("KubeProxy", name, args, opts);
    const { lab } = args;
    const machines = this.below(Machines);
    for (const node of lab.nodes) {
      const connection = machines.connections[node.name];
      const files = kubeProxyFiles(lab, node);
      const written = nodeFiles(`files-${node.name}`, connection, files, this.childOpts());
      nodeUnits(`kube-proxy-${node.name}`, connection, ["kube-proxy"], this.childOpts({}, [written]), {
        // The kubernetes Service's chain shows kube-proxy has synced with the API server.
        ready: "iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q KUBE-SVC-",
        what: "kube-proxy's KUBE-SERVICES chain",
        configDigest: this.below(Pki).unitDigest(node.name, "kube-proxy", files),
      });
    }
    this.registerOutputs({});
  }
}

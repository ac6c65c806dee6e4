// KubeProxy: kube-proxy on every node, in the lab's mode: Services become KUBE-SERVICES -> KUBE-SVC-* ->
// KUBE-SEP-* DNAT rules in the nat table (iptables), IPVS virtual servers (ipvs) or the kube-proxy nftables table.
import type * as pulumi from "@pulumi/pulumi";
import type { Lab } from "../../core/index.ts";
import { kubeProxyFiles } from "../render/index.ts";
import { Tier, type TierArgs } from "../tier.ts";
import { Machines } from "./machines.ts";
import { Pki } from "./pki.ts";
import { nodeFiles, nodeUnits } from "./remote.ts";

/** The kubernetes Service (always there) in the mode's table shows kube-proxy has synced with the API server. */
export function kubeProxySynced(lab: Lab): { ready: string; what: string } {
  const ip = lab.services.kubernetesServiceIP;
  switch (lab.services.kubeProxyMode) {
    case "iptables":
      return { ready: "iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q KUBE-SVC-", what: "kube-proxy's KUBE-SERVICES chain" };
    case "ipvs":
      return { ready: `ipvsadm -Ln -t ${ip}:443 >/dev/null 2>&1`, what: `kube-proxy's IPVS virtual server for ${ip}:443` };
    case "nftables":
      return {
        ready: `nft list map ip kube-proxy service-ips 2>/dev/null | grep -q '${ip} . tcp . 443'`,
        what: `kube-proxy's nftables service-ips entry for ${ip}:443`,
      };
  }
}

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
        ...kubeProxySynced(lab),
        configDigest: this.below(Pki).unitDigest(node.name, "kube-proxy", files),
      });
    }
    this.registerOutputs({});
  }
}

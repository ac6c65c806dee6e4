// Tier 7, NodePort: from the outside client to every node's NodePort, through kube-proxy's mode:
// iptables KUBE-NODEPORTS -> KUBE-EXT-* -> KUBE-SVC-*, an IPVS virtual server on the node's address, or
// nftables' service-nodeports map.

import { WORKLOAD_NAMESPACE } from "../../../core/names.ts";
import { serviceOf } from "../cluster.ts";
import { TIMEOUT } from "../contract.ts";
import { activeBackends, dataplaneOf } from "../dataplane.ts";
import { curlCommand, curlFailure, parseCurl } from "../parse.ts";
import type { ClusterReader, Tier } from "../types.ts";

const lookups = (ctx: ClusterReader) => serviceOf(ctx, WORKLOAD_NAMESPACE, ctx.lab.workloads.businessManager.name);

export const nodeport: Tier = {
  id: "nodeport",
  title: "from the outside client to the NodePort on each node",
  lookups,
  async run(ctx) {
    const { lab } = ctx;
    const bm = lab.workloads.businessManager;
    const svc = await lookups(ctx);
    const port = svc.nodePort ?? bm.nodePort;
    const client = lab.lan.gateway;
    const dp = dataplaneOf(lab);
    const pace = await ctx.paceOf();
    const seen = await Promise.all(
      lab.nodes.map(async (node) => {
        const [nat, answer] = await Promise.all([
          ctx.onNode(node.name, dp.readRules, TIMEOUT.read),
          ctx.fromOutsideClient(curlCommand(`http://${node.address}:${port}/healthz`, { discardBody: true, maxTimeSec: 4, pace }), TIMEOUT.query),
        ]);
        return { node, rules: dp.nodePort(nat.stdout, node.address, port), answer: parseCurl(answer) };
      }),
    );
    for (const { node, rules, answer } of seen) {
      ctx.hop(
        `${node.name} ${dp.entryNames.nodePort} :${port}`,
        rules.entry
          ? `${rules.entry} (${activeBackends(rules).length} endpoints: ${activeBackends(rules)
              .map((e) => e.to)
              .join(", ")})`
          : `no rule for port ${port}`,
        !!rules.entry && activeBackends(rules).length > 0,
        `kube-proxy on ${node.name} writes the NodePort rules (\`${dp.look}\`): \`systemctl restart kube-proxy\` there (its nodePortAddresses must include ${lab.lan.cidr})`,
      );
      ctx.hop(
        `${client} -> ${node.name}:${port}`,
        answer.status
          ? `HTTP ${answer.status} from ${answer.remote ?? node.address}${answer.seconds !== undefined ? ` in ${Math.round(answer.seconds * 1000)} ms` : ""}`
          : curlFailure(answer),
        answer.status === 200,
        `the rule is there but ${node.address}:${port} does not answer: the service tier shows whether the pods behind it answer; check \`iptables -S FORWARD\` on ${node.name}`,
      );
    }
  },
};

// Tier 3, pod -> pod on one node: eth0 -> veth -> the bridge forwards by MAC -> veth -> eth0, no router crossed.
import type { LabNode } from "../../../core/index.ts";
import { appSelector, TOOLBOX, WORKLOAD_NAMESPACE } from "../../../core/names.ts";
import { type Pod, podsOf, toolboxOn } from "../cluster.ts";
import { TIMEOUT } from "../contract.ts";
import { parseFdb, parseLinks, parseNeighbours, parsePing, pingCommand } from "../parse.ts";
import { broken, type ClusterReader, type Exec, type ProbeContext, type Tier } from "../types.ts";

/** The command that shows a pod's eth0: its addresses and the ifindex of its veth peer on the node. */
export const POD_ETH0 = "ip -j addr show eth0";
/** The node's side: the ports of its bridge, one of them the pod's veth. */
export const bridgePorts = (bridge: string) => `ip -j link show master ${bridge}`;

/** The pod's eth0 and, among the bridge's ports, its veth peer: from POD_ETH0's and bridgePorts's outputs. */
export function podSide(eth0: Exec, ports: Exec) {
  const link = parseLinks(eth0.stdout)[0];
  const veth = link?.peerIfindex !== undefined ? parseLinks(ports.stdout).find((p) => p.ifindex === link.peerIfindex) : undefined;
  return { link, veth };
}

/**
 * In one shell in the pod: its eth0, a ping to the peer, then the pod's ARP entry for the peer
 * (the ping's ARP exchange fills it); then on the node, after the ping, the bridge's ports and forwarding table.
 */
async function sameNodePath(ctx: ProbeContext, node: LabNode, from: Pod, to: Pod) {
  const bridge = ctx.lab.pods.bridge;
  const [eth0, ping, neigh] = await ctx.inPodSteps(from, [POD_ETH0, pingCommand(to.ip), `ip -j neigh show ${to.ip}`], TIMEOUT.query);
  const [ports, fdb] = await ctx.onNodeSteps(node.name, [bridgePorts(bridge), `bridge -j fdb show br ${bridge}`], TIMEOUT.read);
  return { node, from, to, ...podSide(eth0, ports), ping: parsePing(ping.stdout), neighbours: parseNeighbours(neigh.stdout), fdb: parseFdb(fdb.stdout) };
}

function explain(ctx: ProbeContext, seen: Awaited<ReturnType<typeof sameNodePath>>) {
  const bridge = ctx.lab.pods.bridge;
  const { node, from, to, link, veth } = seen;
  const at = `${node.name}: `;
  ctx.hop(`${at}pod eth0`, link ? `${from.name} ${link.addresses.join(", ")}, MAC ${link.mac}, MTU ${link.mtu}` : `${from.name}: no eth0`, !!link);
  ctx.hop(
    `${at}veth`,
    veth ? `${veth.name} (ifindex ${veth.ifindex}) on ${veth.master}` : `no port of ${bridge} with ifindex ${link?.peerIfindex}`,
    veth?.master === bridge,
    `the pod's veth is not on ${bridge}: the CNI bridge plugin attaches it; \`ip link show master ${bridge}\` on ${node.name}, then delete the pod so it is recreated`,
  );
  const mac = seen.neighbours.find((n) => n.mac)?.mac;
  const port = mac ? seen.fdb.find((e) => e.mac === mac && e.port !== bridge)?.port : undefined;
  ctx.hop(
    `${at}${bridge}`,
    mac ? `ARP: ${to.ip} is at ${mac}; ${bridge} forwards ${mac} out of ${port ?? "(no port learned)"}` : `no ARP answer from ${to.ip}`,
    !!port,
    `${to.name} does not answer ARP on ${bridge}: \`ip link show master ${bridge}\` on ${node.name} should list its veth, up`,
  );
  const p = seen.ping;
  ctx.hop(
    `${at}peer pod eth0`,
    `${to.name} ${to.ip}: ${p ? `${p.received}/${p.transmitted} replies${p.ttl ? `, ttl ${p.ttl}${p.ttl === 64 ? " (no router between)" : ""}` : ""}` : "no ping summary"}`,
    !!p && p.received > 0,
    `${to.ip} answers ARP but not ping: check \`iptables -S FORWARD\` on ${node.name} (bridged traffic passes it when br_netfilter is loaded)`,
  );
}

/** The workload pods (the toolbox's neighbours) and the toolbox pods. */
const lookups = (ctx: ClusterReader) => {
  const { dataProduct, businessManager } = ctx.lab.workloads;
  return Promise.all([
    podsOf(ctx, WORKLOAD_NAMESPACE, appSelector(dataProduct.name)),
    podsOf(ctx, WORKLOAD_NAMESPACE, appSelector(businessManager.name)),
    podsOf(ctx, TOOLBOX.namespace, TOOLBOX.selector),
  ]);
};

export const podSameNode: Tier = {
  id: "pod-same-node",
  title: "pod -> pod on one node, over the bridge",
  lookups,
  async run(ctx) {
    const { lab } = ctx;
    const [dataProducts, businessManagers] = await lookups(ctx);
    // Running with an address, ready or not: a pod that turned unready because its node's bridge broke
    // is exactly the neighbour this tier must still try to reach.
    const peers = [...dataProducts, ...businessManagers].filter((p) => p.phase === "Running" && !!p.ip);
    const pairs: [LabNode, Pod, Pod][] = [];
    for (const node of lab.nodes) {
      const peer = peers.find((p) => p.node === node.name);
      if (peer) pairs.push([node, await toolboxOn(ctx, node.name), peer]);
    }
    if (!pairs.length) {
      broken(
        "a second pod on one node",
        "no ready workload pod runs beside a toolbox pod",
        `the workloads give the toolbox a neighbour: \`kubectl -n ${WORKLOAD_NAMESPACE} get pods -o wide\``,
      );
    }
    const seen = await Promise.all(pairs.map(([node, from, to]) => sameNodePath(ctx, node, from, to)));
    for (const s of seen) explain(ctx, s);
  },
};

// Tier 4, pod -> pod across nodes: eth0 -> veth -> bridge -> flannel.1 -> FDB -> eth0 as UDP 8472 -> node2 -> flannel.1 -> bridge -> pod, with the capture to prove it.

import { TOOLBOX, UNDERLAY_NIC } from "../../../core/names.ts";
import { shq } from "../../../core/shell.ts";
import { capture, captureAround } from "../capture.ts";
import { podsOf, toolboxOn } from "../cluster.ts";
import { TIMEOUT } from "../contract.ts";
import { fullSizePingCommand, parseFdb, parseLinks, parseNeighbours, parsePing, parseRoutes, parseVxlanLink, pingCommand } from "../parse.ts";
import type { Tier } from "../types.ts";
import { bridgePorts, POD_ETH0, podSide } from "./pod-same-node.ts";

const PINGS = 6;

/** An IPv4 address as the 32-bit number a BPF filter compares a header word with. */
const hexIP = (ip: string) =>
  `0x${ip
    .split(".")
    .map((o) => Number(o).toString(16).padStart(2, "0"))
    .join("")}`;

/**
 * On node2: the VXLAN packets node `from` sends it that carry ICMP from `src` to `dst`, bounded by a
 * count and a timeout. The inner IPv4 header starts at udp[30] (UDP 8 + VXLAN 8 + inner Ethernet 14):
 * protocol udp[39], addresses udp[42:4] and udp[46:4]. Matching the addresses matters after a restart,
 * when node1 answers node2's old pods with "host unreachable" (ICMP too) and would use up the count.
 */
export const vxlanFilter = (from: string, port: number, src: string, dst: string) =>
  `udp dst port ${port} and src host ${from} and udp[39] = 1 and udp[42:4] = ${hexIP(src)} and udp[46:4] = ${hexIP(dst)}`;

const vxlanCapture = (from: string, port: number, src: string, dst: string) =>
  capture(`vxlan-from-${from}`, `tcpdump -nn -l --immediate-mode -c ${PINGS} -i ${UNDERLAY_NIC} ${shq(vxlanFilter(from, port, src, dst))}`);

export const podCrossNode: Tier = {
  id: "pod-cross-node",
  title: "pod -> pod across nodes, over VXLAN",
  // The toolbox pods (toolboxOn below reads the same list).
  lookups: (ctx) => podsOf(ctx, TOOLBOX.namespace, TOOLBOX.selector),
  async run(ctx) {
    const { lab } = ctx;
    if (lab.nodes.length < 2) return { skipped: "the lab has one node: no pod path crosses nodes" };
    const [n1, n2] = lab.nodes;
    const { device: dev, port, vni } = lab.pods.flannel;
    const bridge = lab.pods.bridge;
    const [src, dst] = await Promise.all([toolboxOn(ctx, n1.name), toolboxOn(ctx, n2.name)]);

    // The reads do not depend on the ping and run beside it; the ping waits until node2's capture listens.
    const listen = vxlanCapture(n1.address, port, src.ip, dst.ip);
    const [
      {
        sent: [eth0, ping, fullSize],
        packets,
      },
      [ports, bridgeAddr, route1, neigh1, fdb1],
      [vtep2, route2],
    ] = await Promise.all([
      captureAround(ctx, n2.name, listen, () =>
        ctx.inPodSteps(src, [POD_ETH0, pingCommand(dst.ip, PINGS), fullSizePingCommand(dst.ip, lab.pods.mtu)], TIMEOUT.query),
      ),
      ctx.onNodeSteps(
        n1.name,
        [bridgePorts(bridge), `ip -j addr show ${bridge}`, `ip -j route get ${dst.ip}`, `ip -j neigh show dev ${dev}`, `bridge -j fdb show dev ${dev}`],
        TIMEOUT.read,
      ),
      ctx.onNodeSteps(n2.name, [`ip -d -j link show ${dev}`, `ip -j route get ${dst.ip}`], TIMEOUT.read),
    ]);

    const { link, veth } = podSide(eth0, ports);
    ctx.hop(`pod eth0 (${n1.name})`, link ? `${src.name} ${link.addresses.join(", ")}, MAC ${link.mac}, MTU ${link.mtu}` : `${src.name}: no eth0`, !!link);
    ctx.hop(
      `veth (${n1.name})`,
      veth ? `${veth.name} (ifindex ${veth.ifindex}), a port of ${veth.master}` : `no port of ${bridge} with ifindex ${link?.peerIfindex}`,
      veth?.master === bridge,
      `the pod's veth is not on ${bridge}: \`ip link show master ${bridge}\` on ${n1.name}; delete the pod so the CNI plugin recreates it`,
    );
    const gwAddr = parseLinks(bridgeAddr.stdout)[0]?.addresses[0];
    const route = parseRoutes(route1.stdout)[0];
    ctx.hop(
      `${bridge} (${n1.name})`,
      `${bridge} ${gwAddr ?? "(no address)"} is the pod's gateway; ${n1.name} routes ${dst.ip} ${route ? `via ${route.gateway ?? "(direct)"} dev ${route.dev}` : "nowhere"}`,
      route?.dev === dev,
      `${n1.name} does not route ${n2.podSubnet} over ${dev}: see the flannel tier (\`ip route\` on ${n1.name})`,
    );
    const neighbour = parseNeighbours(neigh1.stdout).find((n) => n.dst === route?.gateway);
    const remote = parseVxlanLink(vtep2.stdout);
    ctx.hop(
      `${dev} (${n1.name})`,
      neighbour
        ? `neighbour ${neighbour.dst} is ${neighbour.mac} ${neighbour.state.join(",")}: ${n2.name}'s VTEP is ${remote?.mac ?? "unknown"}`
        : `no neighbour entry for ${route?.gateway}`,
      !!neighbour && neighbour.mac === remote?.mac,
      `${n1.name}'s neighbour entry does not name ${n2.name}'s VTEP MAC: restart flanneld on ${n1.name}`,
    );
    const fdb = parseFdb(fdb1.stdout).find((e) => e.mac === neighbour?.mac);
    ctx.hop(
      `FDB entry (${n1.name})`,
      fdb ? `${fdb.mac} dst ${fdb.dst}: wrap in UDP to ${fdb.dst}:${port}, VNI ${vni}` : `no FDB entry for ${neighbour?.mac ?? "the VTEP MAC"}`,
      fdb?.dst === n2.address,
      `${n1.name}'s FDB does not send ${n2.name}'s VTEP MAC to ${n2.address}: restart flanneld on ${n1.name}`,
    );
    const ours = packets.filter((p) => p.inner?.includes(`IP ${src.ip} > ${dst.ip}: ICMP echo request`));
    const p = parsePing(ping.stdout);
    ctx.hop(
      `${UNDERLAY_NIC} as UDP ${port}`,
      ours.length
        ? `captured on ${n2.name}'s ${UNDERLAY_NIC}: ${ours.length} x ${ours[0].src}.${ours[0].srcPort} > ${ours[0].dst}.${ours[0].dstPort} VNI ${ours[0].vni}, inside: ${ours[0].inner}`
        : `no VXLAN packet carrying ${src.ip} > ${dst.ip} reached ${n2.name}'s ${UNDERLAY_NIC} (${packets.length} other packets captured)`,
      ours.length > 0 && ours.every((o) => o.vni === undefined || o.vni === vni),
      `${n1.name} did not put the ping on the wire to ${n2.address}: \`tcpdump -ni ${UNDERLAY_NIC} udp port ${port}\` on ${n1.name} shows whether it leaves; compare \`ip -d link show ${dev}\` on both nodes`,
    );
    ctx.hop(
      `${dev} (${n2.name})`,
      remote ? `VTEP ${remote.mac}, VNI ${remote.vni}, UDP ${remote.port}: takes off the VXLAN header` : `no ${dev} on ${n2.name}`,
      !!remote && remote.vni === vni && remote.port === port,
      `${n2.name}'s ${dev} does not match the lab (VNI ${vni}, port ${port}): restart flanneld on ${n2.name}`,
    );
    const inbound = parseRoutes(route2.stdout)[0];
    ctx.hop(
      `${bridge} (${n2.name})`,
      inbound ? `${dst.ip} dev ${inbound.dev}` : `no route to ${dst.ip}`,
      inbound?.dev === bridge,
      `${n2.name} does not deliver ${dst.ip} to ${bridge}: \`ip route\` and \`ip addr show ${bridge}\` on ${n2.name}`,
    );
    ctx.hop(
      `pod eth0 (${n2.name})`,
      `${dst.name} ${dst.ip}: ${p ? `${p.received}/${p.transmitted} replies${p.ttl ? `, ttl ${p.ttl}` : ""}${p.avgMs !== undefined ? `, ${p.avgMs} ms` : ""}` : "no ping summary"}`,
      !!p && p.received > 0,
      `the request arrives encapsulated but no reply comes back: check \`iptables -S FORWARD\` on ${n2.name} (flannel's FLANNEL-FWD accepts ${lab.pods.cidr}) and the reverse path (run this probe from ${n2.name}'s side by hand)`,
    );
    // Only once small packets cross: a full-size packet that does not says the MTUs disagree, not that the path is down.
    const big = parsePing(fullSize.stdout);
    if (p && p.received > 0) {
      ctx.hop(
        `${lab.pods.mtu}-byte packets`,
        `${src.ip} -> ${dst.ip}, Don't Fragment: ${big ? `${big.received}/${big.transmitted} replies` : (fullSize.stdout + fullSize.stderr).trim().split("\n").pop() || "no ping summary"}`,
        !!big && big.received > 0,
        `small packets cross, full-size ones (the pods' MTU, ${lab.pods.mtu}) do not: the MTUs along the path disagree. \`ip link show\` ${dev} and ${UNDERLAY_NIC} on both nodes: ${dev} must be ${UNDERLAY_NIC}'s MTU less 50, the same on every node`,
      );
    }
  },
};

// Tier 4, pod -> pod across nodes, along the backend's path, with a capture on node2's LAN NIC to prove it:
//   vxlan:   eth0 -> veth -> bridge -> flannel.1 -> neighbour + FDB -> eth0 as UDP 8472 -> node2 flannel.1 -> bridge -> pod
//   udp:     eth0 -> veth -> bridge -> flannel0 (TUN) -> flanneld -> eth0 as UDP 8285 -> node2 flanneld -> flannel0 -> bridge -> pod
//   host-gw: eth0 -> veth -> bridge -> route via node2's LAN address -> eth0, not encapsulated -> node2 -> bridge -> pod

import type { LabNode } from "../../../core/index.ts";
import { TOOLBOX, UNDERLAY_NIC } from "../../../core/names.ts";
import { shq } from "../../../core/shell.ts";
import { type Capture, capture, captureAround } from "../capture.ts";
import { type Pod, podsOf, toolboxOn } from "../cluster.ts";
import { TIMEOUT } from "../contract.ts";
import { fullSizePingCommand, parseFdb, parseLinks, parseNeighbours, parsePing, parseRoutes, parseVxlanLink, pingCommand, type UdpPacket } from "../parse.ts";
import type { Exec, ProbeContext, Tier } from "../types.ts";
import { bridgePorts, POD_ETH0, podSide } from "./pod-same-node.ts";

const PINGS = 6;

/** An IPv4 address as the 32-bit number a BPF filter compares a header word with. */
const hexIP = (ip: string) =>
  `0x${ip
    .split(".")
    .map((o) => Number(o).toString(16).padStart(2, "0"))
    .join("")}`;

/**
 * vxlan: the packets node `from` sends over the tunnel that carry ICMP from `src` to `dst`. The inner
 * IPv4 header starts at udp[30] (UDP 8 + VXLAN 8 + inner Ethernet 14): protocol udp[39], addresses
 * udp[42:4] and udp[46:4]. Matching the addresses matters after a restart, when node1 answers node2's
 * old pods with "host unreachable" (ICMP too) and would use up the capture's count.
 */
export const vxlanFilter = (from: string, port: number | undefined, src: string, dst: string) =>
  `udp dst port ${port} and src host ${from} and udp[39] = 1 and udp[42:4] = ${hexIP(src)} and udp[46:4] = ${hexIP(dst)}`;

/**
 * On node2, what node1 sends it of the pings, bounded by a count and a timeout so other pod traffic
 * between the nodes cannot use up the count first. vxlan: above. udp: flanneld's datagram carries the
 * bare IP packet, so its protocol is udp[17] and its addresses udp[20:4] and udp[24:4]. host-gw: the
 * pod packet itself.
 */
export function crossNodeCapture(lab: ProbeContext["lab"], from: LabNode, src: string, dst: string): Capture {
  const { backend, port } = lab.pods.flannel;
  const filter =
    backend === "vxlan"
      ? vxlanFilter(from.address, port, src, dst)
      : backend === "udp"
        ? `udp dst port ${port} and src host ${from.address} and udp[17] = 1 and udp[20:4] = ${hexIP(src)} and udp[24:4] = ${hexIP(dst)}`
        : `icmp and src host ${src} and dst host ${dst}`;
  return capture(`${backend}-from-${from.address}`, `tcpdump -nn -l --immediate-mode -c ${PINGS} -i ${UNDERLAY_NIC} ${shq(filter)}`);
}

/** tcpdump's lines for the host-gw capture: the ICMP requests themselves. */
const icmpLines = (text: string) => text.split("\n").filter((l) => / IP \S+ > \S+: ICMP echo request/.test(l));

export const podCrossNode: Tier = {
  id: "pod-cross-node",
  title: "pod -> pod across nodes, along flannel's backend",
  // The toolbox pods (toolboxOn below reads the same list).
  lookups: (ctx) => podsOf(ctx, TOOLBOX.namespace, TOOLBOX.selector),
  async run(ctx) {
    const { lab } = ctx;
    if (lab.nodes.length < 2) return { skipped: "the lab has one node: no pod path crosses nodes" };
    const [n1, n2] = lab.nodes;
    const { backend, device: dev } = lab.pods.flannel;
    const bridge = lab.pods.bridge;
    const [src, dst] = await Promise.all([toolboxOn(ctx, n1.name), toolboxOn(ctx, n2.name)]);

    // The reads do not depend on the ping and run beside it; the ping waits until node2's capture listens.
    const [captured, [ports, bridgeAddr, route1, ...side1], [route2, ...side2]] = await Promise.all([
      captureAround(ctx, n2.name, crossNodeCapture(lab, n1, src.ip, dst.ip), () =>
        ctx.inPodSteps(src, [POD_ETH0, pingCommand(dst.ip, PINGS), fullSizePingCommand(dst.ip, lab.pods.mtu)], TIMEOUT.query),
      ),
      ctx.onNodeSteps(
        n1.name,
        [
          bridgePorts(bridge),
          `ip -j addr show ${bridge}`,
          `ip -j route get ${dst.ip}`,
          ...(backend === "vxlan" ? [`ip -j neigh show dev ${dev}`, `bridge -j fdb show dev ${dev}`] : []),
        ],
        TIMEOUT.read,
      ),
      ctx.onNodeSteps(n2.name, [`ip -j route get ${dst.ip}`, ...(dev ? [`ip -d -j link show ${dev}`] : [])], TIMEOUT.read),
    ]);
    const {
      sent: [eth0, ping, fullSize],
    } = captured;

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
    // host-gw: the next hop is node2 itself, on the LAN; the others hand the packet to flannel's device.
    const routed = backend === "host-gw" ? route?.dev === UNDERLAY_NIC && route.gateway === n2.address : route?.dev === dev;
    ctx.hop(
      `${bridge} (${n1.name})`,
      `${bridge} ${gwAddr ?? "(no address)"} is the pod's gateway; ${n1.name} routes ${dst.ip} ${route ? `via ${route.gateway ?? "(direct)"} dev ${route.dev}` : "nowhere"}`,
      routed,
      `${n1.name} does not route ${n2.podSubnet} ${backend === "host-gw" ? `via ${n2.address} dev ${UNDERLAY_NIC}` : `over ${dev}`}: see the flannel tier (\`ip route\` on ${n1.name})`,
    );
    if (backend === "vxlan") vxlanHops(ctx, n1, n2, route?.gateway, side1, side2[0], captured.packets, src, dst);
    if (backend === "udp") {
      ctx.hop(
        `${dev} (${n1.name})`,
        `a TUN device: the kernel hands ${dst.ip}'s packets to flanneld, which sends each in a UDP datagram to ${n2.address}:${lab.pods.flannel.port}`,
        routed,
      );
      underlayHop(
        ctx,
        n1,
        n2,
        `UDP ${lab.pods.flannel.port}`,
        captured.packets.length
          ? `captured on ${n2.name}'s ${UNDERLAY_NIC}: ${captured.packets.length} x ${captured.packets[0].src}.${captured.packets[0].srcPort} > ${captured.packets[0].dst}.${captured.packets[0].dstPort}, carrying ${src.ip} > ${dst.ip} ICMP (matched on the inner header)`
          : undefined,
        src,
        dst,
      );
      const remote = parseLinks(side2[0]?.stdout ?? "")[0];
      ctx.hop(
        `${dev} (${n2.name})`,
        remote ? `${remote.name}: flanneld writes the packet it received back into the kernel here` : `no ${dev} on ${n2.name}`,
        !!remote,
      );
    }
    if (backend === "host-gw") {
      // The capture's own text: host-gw's packets are the pods' ICMP itself, no UDP to parse.
      const lines = icmpLines(captured.text);
      underlayHop(
        ctx,
        n1,
        n2,
        "not encapsulated",
        lines.length ? `captured on ${n2.name}'s ${UNDERLAY_NIC}: ${lines.length} x ${lines[0].replace(/^\S+\s+/, "")}` : undefined,
        src,
        dst,
      );
    }
    const inbound = parseRoutes(route2.stdout)[0];
    ctx.hop(
      `${bridge} (${n2.name})`,
      inbound ? `${dst.ip} dev ${inbound.dev}` : `no route to ${dst.ip}`,
      inbound?.dev === bridge,
      `${n2.name} does not deliver ${dst.ip} to ${bridge}: \`ip route\` and \`ip addr show ${bridge}\` on ${n2.name}`,
    );
    const p = parsePing(ping.stdout);
    ctx.hop(
      `pod eth0 (${n2.name})`,
      `${dst.name} ${dst.ip}: ${p ? `${p.received}/${p.transmitted} replies${p.ttl ? `, ttl ${p.ttl}` : ""}${p.avgMs !== undefined ? `, ${p.avgMs} ms` : ""}` : "no ping summary"}`,
      !!p && p.received > 0,
      `the request arrives but no reply comes back: check \`iptables -S FORWARD\` on ${n2.name} (flannel's FLANNEL-FWD accepts ${lab.pods.cidr}) and the reverse path (run this probe from ${n2.name}'s side by hand)`,
    );
    // Only once small packets cross: a full-size packet that does not says the MTUs disagree, not that the path is down.
    const big = parsePing(fullSize.stdout);
    if (p && p.received > 0) {
      ctx.hop(
        `${lab.pods.mtu}-byte packets`,
        `${src.ip} -> ${dst.ip}, Don't Fragment: ${big ? `${big.received}/${big.transmitted} replies` : (fullSize.stdout + fullSize.stderr).trim().split("\n").pop() || "no ping summary"}`,
        !!big && big.received > 0,
        `small packets cross, full-size ones (the pods' MTU, ${lab.pods.mtu}) do not: the MTUs along the path disagree. \`ip link show\` on both nodes: the pods' MTU must be ${UNDERLAY_NIC}'s less the backend's encapsulation, the same on every node`,
      );
    }
  },
};

/** The capture on node2's LAN NIC: the pings arrived there (`seen` says how they looked), or not. */
function underlayHop(ctx: ProbeContext, n1: LabNode, n2: LabNode, how: string, seen: string | undefined, src: Pod, dst: Pod) {
  const carrier = { vxlan: "VXLAN packet carrying", udp: "flanneld datagram carrying", "host-gw": "packet" }[ctx.lab.pods.flannel.backend];
  ctx.hop(
    `${UNDERLAY_NIC} ${how}`,
    seen ?? `no ${carrier} ${src.ip} > ${dst.ip} reached ${n2.name}'s ${UNDERLAY_NIC}`,
    !!seen,
    `${n1.name} did not put the ping on the wire to ${n2.address}: \`tcpdump -ni ${UNDERLAY_NIC} host ${n2.address}\` on ${n1.name} shows whether it leaves`,
  );
}

/** vxlan: the neighbour and FDB entries that address node2's VTEP, the VXLAN packet on the wire, node2's VTEP. */
function vxlanHops(
  ctx: ProbeContext,
  n1: LabNode,
  n2: LabNode,
  gateway: string | undefined,
  [neigh1, fdb1]: Exec[],
  vtep2: Exec | undefined,
  packets: UdpPacket[],
  src: Pod,
  dst: Pod,
) {
  const { device: dev, port, vni } = ctx.lab.pods.flannel;
  const neighbour = parseNeighbours(neigh1?.stdout ?? "").find((n) => n.dst === gateway);
  const remote = parseVxlanLink(vtep2?.stdout ?? "");
  ctx.hop(
    `${dev} (${n1.name})`,
    neighbour
      ? `neighbour ${neighbour.dst} is ${neighbour.mac} ${neighbour.state.join(",")}: ${n2.name}'s VTEP is ${remote?.mac ?? "unknown"}`
      : `no neighbour entry for ${gateway}`,
    !!neighbour && neighbour.mac === remote?.mac,
    `${n1.name}'s neighbour entry does not name ${n2.name}'s VTEP MAC: restart flanneld on ${n1.name}`,
  );
  const fdb = parseFdb(fdb1?.stdout ?? "").find((e) => e.mac === neighbour?.mac);
  ctx.hop(
    `FDB entry (${n1.name})`,
    fdb ? `${fdb.mac} dst ${fdb.dst}: wrap in UDP to ${fdb.dst}:${port}, VNI ${vni}` : `no FDB entry for ${neighbour?.mac ?? "the VTEP MAC"}`,
    fdb?.dst === n2.address,
    `${n1.name}'s FDB does not send ${n2.name}'s VTEP MAC to ${n2.address}: restart flanneld on ${n1.name}`,
  );
  const ours = packets.filter((p) => p.inner?.includes(`IP ${src.ip} > ${dst.ip}: ICMP echo request`) && (p.vni === undefined || p.vni === vni));
  underlayHop(
    ctx,
    n1,
    n2,
    `as UDP ${port}`,
    ours.length
      ? `captured on ${n2.name}'s ${UNDERLAY_NIC}: ${ours.length} x ${ours[0].src}.${ours[0].srcPort} > ${ours[0].dst}.${ours[0].dstPort} VNI ${ours[0].vni}, inside: ${ours[0].inner}`
      : undefined,
    src,
    dst,
  );
  ctx.hop(
    `${dev} (${n2.name})`,
    remote ? `VTEP ${remote.mac}, VNI ${remote.vni}, UDP ${remote.port}: takes off the VXLAN header` : `no ${dev} on ${n2.name}`,
    !!remote && remote.vni === vni && remote.port === port,
    `${n2.name}'s ${dev} does not match the lab (VNI ${vni}, port ${port}): restart flanneld on ${n2.name}`,
  );
}

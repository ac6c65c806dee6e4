// Tier 1, underlay: every node reaches every other on the lab LAN, and UDP to the backend's port (vxlan, udp) gets through.

import { UNDERLAY_NIC } from "../../../core/names.ts";
import { pause, shq } from "../../../core/shell.ts";
import { capture, captureAround } from "../capture.ts";
import { TIMEOUT, UNDERLAY_PROBE_SOURCE_PORT } from "../contract.ts";
import { parsePing, pingCommand } from "../parse.ts";
import type { Tier } from "../types.ts";

/** On the receiver: one datagram from the sender's probe port to the VXLAN port. */
export const udpCapture = (from: string, port: number) =>
  capture(
    `underlay-from-${from}`,
    `tcpdump -nn -l --immediate-mode -c 1 -i ${UNDERLAY_NIC} ${shq(`udp dst port ${port} and src host ${from} and src port ${UNDERLAY_PROBE_SOURCE_PORT}`)}`,
  );

/**
 * A few datagrams, sent once the capture listens. One socat sends a datagram per line (a socat per
 * datagram would be a slow fork each time). The kernel's VXLAN socket drops them (they are not VXLAN);
 * the capture sees them first.
 */
export const udpSendCommand = (to: string, port: number) =>
  `for i in 1 2 3 4 5; do echo k8slab-underlay-probe; ${pause(0.1)}; done | socat -u - UDP4-SENDTO:${to}:${port},sourceport=${UNDERLAY_PROBE_SOURCE_PORT}`;

export const underlay: Tier = {
  id: "underlay",
  title: "node <-> node on the lab LAN, and UDP to flannel's port gets through",
  async run(ctx) {
    const { lab } = ctx;
    if (lab.nodes.length < 2) return { skipped: "the lab has one node: nothing crosses the underlay" };
    const port = lab.pods.flannel.port;
    const pairs = lab.nodes.flatMap((a) => lab.nodes.filter((b) => b !== a).map((b) => ({ a, b })));
    const seen = await Promise.all(
      pairs.map(async ({ a, b }) => {
        // host-gw encapsulates nothing: no port to try.
        const [ping, packet] = await Promise.all([
          ctx.onNode(a.name, pingCommand(b.address), TIMEOUT.query),
          port === undefined
            ? undefined
            : captureAround(ctx, b.name, udpCapture(a.address, port), () => ctx.onNode(a.name, udpSendCommand(b.address, port), TIMEOUT.query)),
        ]);
        return { a, b, ping: parsePing(ping.stdout), packet: packet?.packets[0] };
      }),
    );
    for (const { a, b, ping, packet } of seen) {
      ctx.hop(
        `${a.name} -> ${b.name} ICMP`,
        ping
          ? `${a.address} -> ${b.address} on ${UNDERLAY_NIC}: ${ping.received}/${ping.transmitted} replies${ping.avgMs !== undefined ? `, ${ping.avgMs} ms` : ""}`
          : `${a.address} -> ${b.address}: ping gave no summary`,
        !!ping && ping.received > 0,
        `${b.name} does not answer on the lab LAN: is its VM running (\`npx k8slab status\`)? \`ip -br addr show ${UNDERLAY_NIC}\` on ${b.name} should show ${b.address}/${lab.lan.prefixLength}`,
      );
      if (port === undefined) continue;
      ctx.hop(
        `${a.name} -> ${b.name} UDP ${port}`,
        packet
          ? `a datagram from ${packet.src}:${packet.srcPort} reached ${b.name}'s ${UNDERLAY_NIC} at port ${packet.dstPort}`
          : `datagrams sent from ${a.address}:${UNDERLAY_PROBE_SOURCE_PORT}, none seen on ${b.name}'s ${UNDERLAY_NIC}`,
        !!packet,
        // tcpdump sees a packet before the receiver's firewall does: a miss here is the sender or the LAN.
        `UDP ${port} from ${a.name} never reached ${b.name}'s NIC: check the sender's firewall (\`iptables -S OUTPUT\` on ${a.name}) and that the lab bridge forwards between the nodes' taps (\`bridge link\` in namespace ${lab.netns})`,
      );
    }
  },
};

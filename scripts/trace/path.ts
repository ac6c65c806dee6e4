// Where a trace looks: every device a packet of this path crosses, in the order it crosses them, and
// the capture filters that catch it there (before NAT and after, plain and inside VXLAN). Pure.
import type { Lab } from "../../core/index.ts";
import { UNDERLAY_NIC } from "../../core/names.ts";
import type { Pod } from "../probes/cluster.ts";
import type { Proto } from "./endpoints.ts";
import { type Place, placeNode } from "./endpoints.ts";
import type { Tunnel } from "./packets.ts";

/** A device a capture runs on: on a node (its host namespace, or a pod's), or the outside client's LAN. */
export interface CaptureSpot {
  /** "node1/cni0", "node2/pod data-product-abc/eth0", "client/lan0": the pcapng interface name too. */
  id: string;
  node?: string;
  device: string;
  /** Captured inside this pod's network namespace. */
  pod?: Pod;
}

/** One observation point of a path: a spot, and whether the packet is VXLAN-encapsulated there. */
export interface Point {
  spot: string;
  /** What this point is, for the learner: "pod eth0", "host side of the pod's veth", ... */
  role: string;
  encap: boolean;
}

/** The names of a lab's devices on a node: the underlay NIC, flannel's device (vxlan, udp), the pod bridge. */
export function spotsOf(lab: Lab) {
  const dev = lab.pods.flannel.device;
  return {
    underlay: (node: string): CaptureSpot => ({ id: `${node}/${UNDERLAY_NIC}`, node, device: UNDERLAY_NIC }),
    /** flannel's own device: none with host-gw. */
    vtep: (node: string): CaptureSpot | undefined => (dev ? { id: `${node}/${dev}`, node, device: dev } : undefined),
    bridge: (node: string): CaptureSpot => ({ id: `${node}/${lab.pods.bridge}`, node, device: lab.pods.bridge }),
    podEth0: (pod: Pod): CaptureSpot => ({ id: `${pod.node}/pod ${pod.name}/eth0`, node: pod.node, device: "eth0", pod }),
    /** The host end of the pod's veth: its name is read live (it follows from the pod's eth0 peer index). */
    veth: (pod: Pod, name: string): CaptureSpot => ({ id: `${pod.node}/${name}`, node: pod.node, device: name }),
    client: (): CaptureSpot => ({ id: "client/lan0", device: "lan0" }),
  };
}

/**
 * The request's points from `from` to `to` (the replies cross them backwards). `entry` is where a
 * client's packet enters the nodes (the node it was sent to). `vethOf` names a pod's host veth.
 */
export function pathPoints(lab: Lab, from: Place, to: Place, vethOf: (pod: Pod) => string, entry?: string): Point[] {
  const s = spotsOf(lab);
  const point = (spot: CaptureSpot, role: string, encap = false): Point => ({ spot: spot.id, role, encap });
  const { backend, device: dev } = lab.pods.flannel;
  const what = backend === "vxlan" ? "VXLAN endpoint" : "TUN device, read and written by flanneld";
  const points: Point[] = [];
  if (from.kind === "pod") {
    points.push(
      point(s.podEth0(from.pod), "the sender pod's eth0"),
      point(s.veth(from.pod, vethOf(from.pod)), "the host end of its veth"),
      point(s.bridge(from.pod.node), `${lab.pods.bridge}, the node's pod bridge`),
    );
  }
  if (from.kind === "client") points.push(point(s.client(), "the outside client's LAN"));
  const start = from.kind === "client" ? entry : placeNode(from);
  const end = placeNode(to);
  if (from.kind === "client" && start) points.push(point(s.underlay(start), `${UNDERLAY_NIC} of ${start}, where the packet enters the cluster`));
  if (start && end && start !== end) {
    if (to.kind === "pod" && dev) {
      const as = backend === "vxlan" ? "VXLAN" : `UDP ${lab.pods.flannel.port} from flanneld`;
      points.push(
        point(s.vtep(start)!, `${dev}, ${start}'s ${what}: encapsulates`),
        point(s.underlay(start), `${UNDERLAY_NIC} of ${start}, as ${as}`, true),
        point(s.underlay(end), `${UNDERLAY_NIC} of ${end}, as ${as}`, true),
        point(s.vtep(end)!, `${dev}, ${end}'s ${what}: decapsulates`),
      );
    } else if (to.kind === "pod") {
      // host-gw: routed to the peer's LAN address, not encapsulated.
      points.push(
        point(s.underlay(start), `${UNDERLAY_NIC} of ${start}, the pod packet itself (host-gw)`),
        point(s.underlay(end), `${UNDERLAY_NIC} of ${end}`),
      );
    } else if (from.kind !== "client") {
      points.push(point(s.underlay(start), `${UNDERLAY_NIC} of ${start}`), point(s.underlay(end), `${UNDERLAY_NIC} of ${end}`));
    }
  }
  if (to.kind === "pod") {
    points.push(
      point(s.bridge(to.pod.node), `${lab.pods.bridge} of ${to.pod.node}`),
      point(s.veth(to.pod, vethOf(to.pod)), "the host end of the receiver's veth"),
      point(s.podEth0(to.pod), "the receiver pod's eth0"),
    );
  }
  // A node's own address: delivered locally, after the last point on its way in.
  return points.filter((p, i) => points.findIndex((q) => q.spot === p.spot && q.encap === p.encap) === i);
}

/** How a trace's packets are told apart from all other traffic on a device. */
export interface Mark {
  proto: Proto;
  /** ICMP: the IP total length of the echo request (its payload size is chosen per trace). */
  ipLength?: number;
  /** TCP/UDP: the sender's source port, the port it sends to, and the backends' port after DNAT. */
  ports?: number[];
}

/**
 * The tcpdump filter for a spot: the marked packets, plain or inside flannel's tunnel (`tunnel`: on
 * the underlay NIC of a vxlan or udp lab), its inner header at a fixed offset in the UDP datagram.
 */
export function captureFilter(mark: Mark, tunnel?: { kind: Tunnel; port: number }): string {
  const plain = mark.proto === "icmp" ? `(icmp and ip[2:2] = ${mark.ipLength})` : `(${mark.proto} and (${mark.ports!.map((p) => `port ${p}`).join(" or ")}))`;
  if (!tunnel) return plain;
  // Before the inner IP header: vxlan, UDP 8 + VXLAN 8 + inner Ethernet 14 = 30 bytes of the datagram
  // (50 with the outer IPv4 header); udp, UDP 8 (28). The inner transport header follows 20 bytes later
  // (no IP options in the lab's traffic).
  const at = tunnel.kind === "vxlan" ? 30 : 8;
  const inner =
    mark.proto === "icmp"
      ? `ip[2:2] = ${mark.ipLength! + 20 + at}`
      : mark.ports!.flatMap((p) => [`udp[${at + 20}:2] = ${p}`, `udp[${at + 22}:2] = ${p}`]).join(" or ");
  return `${plain} or (udp port ${tunnel.port} and (${inner}))`;
}

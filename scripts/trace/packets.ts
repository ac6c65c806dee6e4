// The packets a trace captured, read from tcpdump's pcap files byte by byte (Ethernet, IPv4, ICMP,
// TCP, UDP, and VXLAN's inner frame), and the same packets written as pcapng with each capture point's
// name, for Wireshark. Pure: bytes in, packets or bytes out.

export interface Ipv4 {
  src: string;
  dst: string;
  /** IP protocol: 1 ICMP, 6 TCP, 17 UDP. */
  proto: number;
  /** The IP header's total length. */
  length: number;
  ttl: number;
  sport?: number;
  dport?: number;
  /** ICMP type (8 echo request, 0 echo reply, 3 unreachable). */
  icmpType?: number;
  /** TCP flags as tcpdump writes them: S, S., ., P., F., R. */
  tcpFlags?: string;
}

export interface Packet {
  /** Seconds since the epoch, microsecond precision. */
  time: number;
  srcMac: string;
  dstMac: string;
  ip: Ipv4;
  /**
   * A packet flannel encapsulated (ip above is the outer header): VXLAN carries a whole frame (its VNI
   * and inner MACs), flannel's udp backend the bare IP packet.
   */
  encap?: { kind: Tunnel; vni?: number; srcMac?: string; dstMac?: string; inner: Ipv4 };
  /** The captured bytes (Ethernet frame), for pcapng. */
  raw: Buffer;
}

const mac = (b: Buffer, at: number) => [...b.subarray(at, at + 6)].map((x) => x.toString(16).padStart(2, "0")).join(":");
const ipv4 = (b: Buffer, at: number) => [...b.subarray(at, at + 4)].join(".");
const TCP_FLAGS: [number, string][] = [
  [0x02, "S"],
  [0x01, "F"],
  [0x04, "R"],
  [0x08, "P"],
  [0x20, "U"],
];

/** An IPv4 header and its transport ports at `at`; undefined when the bytes are not IPv4. */
function parseIpv4(b: Buffer, at: number): Ipv4 | undefined {
  if (b.length < at + 20 || b[at] >> 4 !== 4) return undefined;
  const ihl = (b[at] & 0x0f) * 4;
  const ip: Ipv4 = { src: ipv4(b, at + 12), dst: ipv4(b, at + 16), proto: b[at + 9], length: b.readUInt16BE(at + 2), ttl: b[at + 8] };
  const l4 = at + ihl;
  if ((ip.proto === 6 || ip.proto === 17) && b.length >= l4 + 4) {
    ip.sport = b.readUInt16BE(l4);
    ip.dport = b.readUInt16BE(l4 + 2);
  }
  if (ip.proto === 1 && b.length > l4) ip.icmpType = b[l4];
  if (ip.proto === 6 && b.length >= l4 + 14) {
    const f = b[l4 + 13];
    ip.tcpFlags = TCP_FLAGS.filter(([bit]) => f & bit)
      .map(([, c]) => c)
      .join("")
      .concat(f & 0x10 ? "." : "");
  }
  return ip;
}

/** flannel's encapsulations: vxlan (a frame in UDP, 8472) and udp (an IP packet in UDP, 8285). */
export type Tunnel = "vxlan" | "udp";

/** One Ethernet frame; `tunnel` decodes UDP to its port as that encapsulation (flannel's 8472 is not the IANA 4789). */
export function parseFrame(raw: Buffer, time: number, tunnel?: { kind: Tunnel; port: number }): Packet | undefined {
  if (raw.length < 14 || raw.readUInt16BE(12) !== 0x0800) return undefined;
  const ip = parseIpv4(raw, 14);
  if (!ip) return undefined;
  const packet: Packet = { time, srcMac: mac(raw, 6), dstMac: mac(raw, 0), ip, raw };
  if (ip.proto === 17 && tunnel && (ip.dport === tunnel.port || ip.sport === tunnel.port)) {
    const payload = 14 + (raw[14] & 0x0f) * 4 + 8;
    if (tunnel.kind === "udp") {
      const inner = parseIpv4(raw, payload);
      if (inner) packet.encap = { kind: "udp", inner };
    } else {
      const frame = payload + 8;
      const inner = raw.length >= frame + 14 && raw.readUInt16BE(frame + 12) === 0x0800 ? parseIpv4(raw, frame + 14) : undefined;
      if (inner) packet.encap = { kind: "vxlan", vni: raw.readUIntBE(payload + 4, 3), srcMac: mac(raw, frame + 6), dstMac: mac(raw, frame), inner };
    }
  }
  return packet;
}

/** A pcap file (tcpdump -w) as packets; other link types than Ethernet are skipped. */
export function parsePcap(file: Buffer, tunnel?: { kind: Tunnel; port: number }): Packet[] {
  if (file.length < 24) return [];
  const magic = file.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && file.readUInt32BE(0) !== 0xa1b2c3d4 && file.readUInt32BE(0) !== 0xa1b23c4d) throw new Error("not a pcap file");
  const nano = (le ? magic : file.readUInt32BE(0)) === 0xa1b23c4d;
  const u32 = (at: number) => (le ? file.readUInt32LE(at) : file.readUInt32BE(at));
  if (u32(20) !== 1) return [];
  const packets: Packet[] = [];
  for (let at = 24; at + 16 <= file.length; ) {
    const time = u32(at) + u32(at + 4) / (nano ? 1e9 : 1e6);
    const caplen = u32(at + 8);
    const raw = file.subarray(at + 16, at + 16 + caplen);
    at += 16 + caplen;
    const p = parseFrame(Buffer.from(raw), time, tunnel);
    if (p) packets.push(p);
  }
  return packets;
}

/** One line per packet, tcpdump-like: the headers as they are at that point. */
export function describePacket(p: Packet): string {
  const l3 = (ip: Ipv4) => {
    const ports = ip.sport !== undefined ? `${ip.src}:${ip.sport} > ${ip.dst}:${ip.dport}` : `${ip.src} > ${ip.dst}`;
    const what =
      ip.proto === 1
        ? `ICMP ${ip.icmpType === 8 ? "echo request" : ip.icmpType === 0 ? "echo reply" : `type ${ip.icmpType}`}`
        : ip.proto === 6
          ? `TCP [${ip.tcpFlags}]`
          : ip.proto === 17
            ? "UDP"
            : `proto ${ip.proto}`;
    return `${ports} ${what}, length ${ip.length}, ttl ${ip.ttl}`;
  };
  if (p.encap?.kind === "vxlan") return `${l3(p.ip)}: VXLAN vni ${p.encap.vni} [${p.encap.srcMac} > ${p.encap.dstMac}] ${l3(p.encap.inner)}`;
  if (p.encap?.kind === "udp") return `${l3(p.ip)}: flannel udp, carrying ${l3(p.encap.inner)}`;
  return `${p.srcMac} > ${p.dstMac} ${l3(p.ip)}`;
}

/** The header a flow is matched on: an encapsulated packet's inner one. */
export const innerOf = (p: Packet) => p.encap?.inner ?? p.ip;

// pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-01.html): a section header, one
// interface per capture point (its if_name and if_description say node and device), then the packets.
const pad4 = (n: number) => (4 - (n % 4)) % 4;

function block(type: number, body: Buffer): Buffer {
  const total = 12 + body.length;
  const out = Buffer.alloc(total);
  out.writeUInt32LE(type, 0);
  out.writeUInt32LE(total, 4);
  body.copy(out, 8);
  out.writeUInt32LE(total, total - 4);
  return out;
}

function option(code: number, value: string): Buffer {
  const v = Buffer.from(value, "utf8");
  const out = Buffer.alloc(4 + v.length + pad4(v.length));
  out.writeUInt16LE(code, 0);
  out.writeUInt16LE(v.length, 2);
  v.copy(out, 4);
  return out;
}

const END_OF_OPTIONS = Buffer.alloc(4);

/** A pcapng file with one interface per capture point: [{ name: "node1/eth0", description, packets }]. */
export function toPcapng(interfaces: { name: string; description: string; packets: Packet[] }[]): Buffer {
  const shb = Buffer.alloc(16);
  shb.writeUInt32LE(0x1a2b3c4d, 0); // byte-order magic
  shb.writeUInt16LE(1, 4);
  shb.writeUInt16LE(0, 6);
  shb.writeBigInt64LE(-1n, 8); // section length unknown
  const blocks = [block(0x0a0d0d0a, Buffer.concat([shb, option(4, "k8slab trace"), END_OF_OPTIONS]))];
  interfaces.forEach((iface) => {
    const idb = Buffer.alloc(8);
    idb.writeUInt16LE(1, 0); // LINKTYPE_ETHERNET
    idb.writeUInt32LE(262144, 4); // snaplen
    // if_tsresol defaults to microseconds.
    blocks.push(block(0x00000001, Buffer.concat([idb, option(2, iface.name), option(3, iface.description), END_OF_OPTIONS])));
  });
  const all = interfaces.flatMap((iface, id) => iface.packets.map((p) => ({ id, p }))).sort((a, b) => a.p.time - b.p.time);
  for (const { id, p } of all) {
    const micros = BigInt(Math.round(p.time * 1e6));
    const epb = Buffer.alloc(20);
    epb.writeUInt32LE(id, 0);
    epb.writeUInt32LE(Number(micros >> 32n), 4);
    epb.writeUInt32LE(Number(micros & 0xffffffffn), 8);
    epb.writeUInt32LE(p.raw.length, 12);
    epb.writeUInt32LE(p.raw.length, 16);
    blocks.push(block(0x00000006, Buffer.concat([epb, p.raw, Buffer.alloc(pad4(p.raw.length))])));
  }
  return Buffer.concat(blocks);
}

// The pod-cross-node capture filter, compiled and run by the real tcpdump on VXLAN packets written
// here byte by byte: it takes the probe's pings and nothing else node1 sends node2 over the tunnel.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { $ } from "zx";
import { vxlanFilter } from "../scripts/probes/tiers/pod-cross-node.ts";

const NODE1 = "192.168.0.21";
const NODE2 = "192.168.0.22";
const PORT = 8472;
const ip = (a: string) => a.split(".").map(Number);
const u16 = (n: number) => [n >> 8, n & 0xff];

/** An IPv4 header (no options, checksum 0: tcpdump does not check it) followed by its payload. */
// biome-ignore format: one header, one line
const ipv4 = (proto: number, src: string, dst: string, payload: number[]) => [
  0x45, 0, ...u16(20 + payload.length), 0, 0, 0x40, 0, 64, proto, 0, 0, ...ip(src), ...ip(dst), ...payload,
];
const ether = (payload: number[]) => [...[2, 0, 0, 0, 0, 2], ...[2, 0, 0, 0, 0, 1], 0x08, 0x00, ...payload];
/** A frame node1 puts on the LAN: an inner ICMP packet of the given type, wrapped by flannel.1 (VNI 1). */
const vxlanFrame = (innerSrc: string, innerDst: string, icmpType: number) => {
  const inner = ether(ipv4(1, innerSrc, innerDst, [icmpType, 0, 0, 0, 0, 1, 0, 1, ...new Array(16).fill(0)]));
  const vxlan = [0x08, 0, 0, 0, 0, 0, 1, 0, ...inner];
  return ether(ipv4(17, NODE1, NODE2, [...u16(40000), ...u16(PORT), ...u16(8 + vxlan.length), 0, 0, ...vxlan]));
};

function pcap(frames: number[][]): Buffer {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(65535, 16);
  header.writeUInt32LE(1, 20); // Ethernet
  const records = frames.map((f, i) => {
    const r = Buffer.alloc(16);
    r.writeUInt32LE(1_700_000_000 + i, 0);
    r.writeUInt32LE(f.length, 8);
    r.writeUInt32LE(f.length, 12);
    return Buffer.concat([r, Buffer.from(f)]);
  });
  return Buffer.concat([header, ...records]);
}

test("the cross-node capture counts the probe's pings, not node1's 'host unreachable' to node2's old pods", {
  skip: !fs.existsSync("/usr/bin/tcpdump") && "tcpdump is not installed",
}, async () => {
  const [src, dst] = ["172.30.1.12", "172.30.2.15"];
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-vxlan-")), "lan.pcap");
  fs.writeFileSync(
    file,
    pcap([
      vxlanFrame("172.30.1.0", "172.30.2.14", 3), // node1's gateway: host unreachable, to a pod gone with the restart
      vxlanFrame(src, dst, 8), // the probe's echo request
      vxlanFrame(src, "172.30.2.99", 8), // a ping to another pod
      vxlanFrame(src, dst, 8),
    ]),
  );
  try {
    const read = await $({ quiet: true })`tcpdump -nn -r ${file} ${vxlanFilter(NODE1, PORT, src, dst)}`;
    // tcpdump prints a VXLAN packet on two lines: the outer header, then the inner packet.
    const inner = read.stdout.split("\n").filter((l) => l.includes("ICMP"));
    assert.equal(inner.length, 2, read.stdout);
    for (const line of inner) assert.match(line, /172\.30\.1\.12 > 172\.30\.2\.15: ICMP echo request/);
    // Another VXLAN port, or another sender, is not flannel's packet from node1.
    const other = await $({ quiet: true })`tcpdump -nn -r ${file} ${vxlanFilter("192.168.0.23", PORT, src, dst)}`;
    assert.equal(other.stdout.trim(), "");
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
});

// `k8slab trace` without a lab: endpoints and protocols checked before anything is sent, packets read
// from pcap bytes (plain and inside flannel's VXLAN), the pcapng written for Wireshark (read back by
// tcpdump when the host has it), conntrack's tuples, and the order of a path's observation points.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { loadLab } from "../scripts/lab-file.ts";
import type { Pod } from "../scripts/probes/cluster.ts";
import { parseEndpoint, protoFor } from "../scripts/trace/endpoints.ts";
import { describePacket, type Packet, parsePcap, toPcapng } from "../scripts/trace/packets.ts";
import { captureFilter, pathPoints } from "../scripts/trace/path.ts";
import { inFlow, natTuples, parseConntrack, sendFromFreePort, sourcePorts, startCapture } from "../scripts/trace/run.ts";

const root = path.join(import.meta.dirname, "..");
const loaded = loadLab(path.join(root, "labs/two-node.yaml"));
const lab = loaded.ok ? loaded.lab : assert.fail();

test("endpoints: every form the issue names parses; anything else says why", () => {
  assert.deepEqual(parseEndpoint(lab, "business-manager"), { kind: "pod", workload: "business-manager", index: 0 });
  assert.deepEqual(parseEndpoint(lab, "data-product/2"), { kind: "pod", workload: "data-product", index: 2 });
  assert.deepEqual(parseEndpoint(lab, "svc/kube-dns"), { kind: "svc", name: "kube-dns" });
  assert.deepEqual(parseEndpoint(lab, "node/node2"), { kind: "node", name: "node2" });
  assert.deepEqual(parseEndpoint(lab, "nodeport/node1"), { kind: "nodeport", node: "node1" });
  assert.deepEqual(parseEndpoint(lab, "ingress"), { kind: "ingress" });
  assert.deepEqual(parseEndpoint(lab, "client"), { kind: "client" });
  assert.match(parseEndpoint(lab, "node/node9") as string, /no node node9 \(node1, node2\)/);
  assert.match(parseEndpoint(lab, "svc/nope") as string, /no such Service \(business-manager, data-product, kube-dns\)/);
  assert.match(parseEndpoint(lab, "svc/data-product-headless") as string, /headless Service has no ClusterIP/);
  assert.match(parseEndpoint(lab, "web") as string, /not an endpoint .* workloads: business-manager, data-product, toolbox, coredns/);
  assert.match(parseEndpoint(lab, "toolbox/x") as string, /index is a number/);
});

test("protocols: a ClusterIP is not pinged; defaults follow the target", () => {
  assert.match(protoFor(lab, { kind: "svc", name: "data-product" }, "icmp") as string, /answers only its ports, not ping/);
  assert.deepEqual(protoFor(lab, { kind: "svc", name: "data-product" }), { proto: "tcp", port: 50051 });
  assert.deepEqual(protoFor(lab, { kind: "svc", name: "kube-dns" }), { proto: "udp", port: 53 });
  assert.deepEqual(protoFor(lab, { kind: "pod", workload: "toolbox", index: 1 }), { proto: "icmp" });
  assert.match(protoFor(lab, { kind: "pod", workload: "toolbox", index: 1 }, "tcp") as string, /needs --port/);
  assert.deepEqual(protoFor(lab, { kind: "nodeport", node: "node2" }), { proto: "tcp", port: 30080 });
  assert.match(protoFor(lab, { kind: "ingress" }, "udp") as string, /HTTP over TCP only/);
});

/** An Ethernet + IPv4 frame around `l4` (protocol `proto`). */
function frame(src: string, dst: string, proto: number, l4: Buffer, macs = ["0a:00:00:00:00:01", "0a:00:00:00:00:02"]): Buffer {
  const eth = Buffer.alloc(14);
  Buffer.from(macs[1].replaceAll(":", ""), "hex").copy(eth, 0);
  Buffer.from(macs[0].replaceAll(":", ""), "hex").copy(eth, 6);
  eth.writeUInt16BE(0x0800, 12);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + l4.length, 2);
  ip[8] = 64;
  ip[9] = proto;
  Buffer.from(src.split(".").map(Number)).copy(ip, 12);
  Buffer.from(dst.split(".").map(Number)).copy(ip, 16);
  return Buffer.concat([eth, ip, l4]);
}
const icmpEcho = (payload: number) => Buffer.concat([Buffer.from([8, 0, 0, 0, 0, 1, 0, 1]), Buffer.alloc(payload)]);
function tcpSyn(sport: number, dport: number): Buffer {
  const t = Buffer.alloc(20);
  t.writeUInt16BE(sport, 0);
  t.writeUInt16BE(dport, 2);
  t[12] = 0x50;
  t[13] = 0x02;
  return t;
}
function vxlan(inner: Buffer, vni: number): Buffer {
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(40000, 0);
  udp.writeUInt16BE(8472, 2);
  udp.writeUInt16BE(8 + 8 + inner.length, 4);
  const vx = Buffer.alloc(8);
  vx[0] = 0x08;
  vx.writeUIntBE(vni, 4, 3);
  return Buffer.concat([udp, vx, inner]);
}
function pcap(frames: Buffer[], t0 = 1_764_500_000): Buffer {
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0xa1b2c3d4, 0);
  head.writeUInt16LE(2, 4);
  head.writeUInt16LE(4, 6);
  head.writeUInt32LE(262144, 16);
  head.writeUInt32LE(1, 20);
  return Buffer.concat([
    head,
    ...frames.flatMap((f, i) => {
      const rec = Buffer.alloc(16);
      rec.writeUInt32LE(t0 + i, 0);
      rec.writeUInt32LE(250_000, 4);
      rec.writeUInt32LE(f.length, 8);
      rec.writeUInt32LE(f.length, 12);
      return [rec, f];
    }),
  ]);
}

test("packets: plain ICMP and TCP, and a VXLAN packet's outer and inner headers, read from pcap bytes", () => {
  const ping = frame("172.30.1.5", "172.30.2.3", 1, icmpEcho(1000));
  const syn = frame("172.30.1.5", "10.254.70.70", 6, tcpSyn(45001, 80));
  const encapsulated = frame("192.168.0.21", "192.168.0.22", 17, vxlan(ping, 1));
  const [a, b, c] = parsePcap(pcap([ping, syn, encapsulated]), { kind: "vxlan", port: 8472 });
  assert.deepEqual([a.ip.src, a.ip.dst, a.ip.proto, a.ip.length, a.ip.icmpType], ["172.30.1.5", "172.30.2.3", 1, 1028, 8]);
  assert.equal(a.time, 1_764_500_000.25);
  assert.deepEqual([b.ip.sport, b.ip.dport, b.ip.tcpFlags], [45001, 80, "S"]);
  assert.equal(c.encap?.vni, 1);
  assert.deepEqual([c.ip.dport, c.encap?.inner.dst, c.encap?.inner.length], [8472, "172.30.2.3", 1028]);
  assert.match(
    describePacket(c),
    /^192\.168\.0\.21:40000 > 192\.168\.0\.22:8472 UDP, length 1078, ttl 64: VXLAN vni 1 \[0a:00:00:00:00:01 > 0a:00:00:00:00:02\] 172\.30\.1\.5 > 172\.30\.2\.3 ICMP echo request, length 1028/,
  );
  assert.equal(parsePcap(pcap([encapsulated])).at(0)?.encap, undefined, "without the port, UDP stays UDP");
  // The capture filter finds the same packet plain (its length) and encapsulated (50 bytes more outside).
  assert.equal(
    captureFilter({ proto: "icmp", ipLength: 1028 }, { kind: "vxlan", port: 8472 }),
    "(icmp and ip[2:2] = 1028) or (udp port 8472 and (ip[2:2] = 1078))",
  );
  assert.match(captureFilter({ proto: "tcp", ports: [45001, 80] }, { kind: "vxlan", port: 8472 }), /udp\[50:2\] = 45001 or udp\[52:2\] = 45001/);
  // flannel's udp backend carries the bare IP packet: 28 bytes outside it, the ports 20 bytes into it.
  assert.equal(
    captureFilter({ proto: "icmp", ipLength: 1028 }, { kind: "udp", port: 8285 }),
    "(icmp and ip[2:2] = 1028) or (udp port 8285 and (ip[2:2] = 1056))",
  );
  assert.match(captureFilter({ proto: "tcp", ports: [45001] }, { kind: "udp", port: 8285 }), /udp\[28:2\] = 45001 or udp\[30:2\] = 45001/);
});

test("pcapng: one interface per capture point, named by node and device; tcpdump reads it back", () => {
  const ping = frame("172.30.1.5", "172.30.2.3", 1, icmpEcho(1000));
  const packets: Packet[] = parsePcap(pcap([ping, ping]));
  const file = toPcapng([
    { name: "node1/cni0", description: "bridge", packets: [packets[0]] },
    { name: "node2/cni0", description: "bridge", packets: [packets[1]] },
  ]);
  assert.equal(file.readUInt32LE(0), 0x0a0d0d0a, "section header block");
  assert.equal(file.readUInt32LE(8), 0x1a2b3c4d, "byte-order magic");
  assert.ok(file.includes(Buffer.from("node1/cni0")) && file.includes(Buffer.from("node2/cni0")));
  // Every block's length is repeated at its end and is a multiple of 4.
  for (let at = 0; at < file.length; ) {
    const len = file.readUInt32LE(at + 4);
    assert.equal(len % 4, 0);
    assert.equal(file.readUInt32LE(at + len - 4), len);
    at += len;
  }
  const tcpdump = spawnSync("tcpdump", ["--version"]).status === 0;
  if (!tcpdump) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-pcapng-"));
  try {
    fs.writeFileSync(path.join(dir, "t.pcapng"), file);
    const r = spawnSync("tcpdump", ["-r", path.join(dir, "t.pcapng"), "-nn", "-tt"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim().split("\n").length, 2);
    assert.match(r.stdout, /^1764500000\.250000 IP 172\.30\.1\.5 > 172\.30\.2\.3: ICMP echo request, id 1, seq 1, length 1008$/m);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("conntrack: a connection's original and reply tuples (the reply names the backend kube-proxy chose)", () => {
  const [e] = parseConntrack(
    "tcp      6 117 TIME_WAIT src=172.30.1.5 dst=10.254.70.70 sport=45001 dport=80 src=172.30.2.5 dst=172.30.1.5 sport=80 dport=45001 [ASSURED] mark=0 use=1\n",
  );
  assert.deepEqual(e.original, { src: "172.30.1.5", dst: "10.254.70.70", sport: 45001, dport: 80 });
  assert.deepEqual(e.reply, { src: "172.30.2.5", dst: "172.30.1.5", sport: 80, dport: 45001 });
});

test("path: a cross-node pod's packet crosses eth0, veth, bridge, VTEP, the underlay as VXLAN, and the same backwards", () => {
  const pod = (name: string, node: string): Pod => ({ namespace: "default", name, node, ip: "", phase: "Running", ready: true, containerID: "" });
  const points = pathPoints(lab, { kind: "pod", pod: pod("a", "node1") }, { kind: "pod", pod: pod("b", "node2") }, (p) => `veth-${p.name}`);
  assert.deepEqual(
    points.map((p) => `${p.spot}${p.encap ? " (vxlan)" : ""}`),
    [
      "node1/pod a/eth0",
      "node1/veth-a",
      "node1/cni0",
      "node1/flannel.1",
      "node1/eth0 (vxlan)",
      "node2/eth0 (vxlan)",
      "node2/flannel.1",
      "node2/cni0",
      "node2/veth-b",
      "node2/pod b/eth0",
    ],
  );
  // The outside client to a NodePort on node1 whose backend runs on node2: in at node1's eth0, then the overlay.
  const nodeport = pathPoints(lab, { kind: "client" }, { kind: "pod", pod: pod("b", "node2") }, (p) => `veth-${p.name}`, "node1");
  assert.deepEqual(nodeport.map((p) => `${p.spot}${p.encap ? " (vxlan)" : ""}`).slice(0, 4), [
    "client/lan0",
    "node1/eth0",
    "node1/flannel.1",
    "node1/eth0 (vxlan)",
  ]);
  // Same node: the bridge connects the two veths; nothing crosses the underlay.
  const local = pathPoints(lab, { kind: "pod", pod: pod("a", "node1") }, { kind: "pod", pod: pod("c", "node1") }, (p) => `veth-${p.name}`);
  assert.ok(!local.some((p) => p.spot.endsWith("eth0") && !p.spot.includes("pod")));
});

test("a trace's capture keeps a packet that arrived just before its stop (real tcpdump; without --immediate-mode it waits in the kernel's ring and is lost)", {
  skip: process.getuid?.() !== 0 || spawnSync("tcpdump", ["--version"]).status !== 0 ? "needs root and tcpdump" : false,
}, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-trace-capture-"));
  try {
    const c = startCapture({ id: "here/lo", device: "lo" }, "udp port 9999", dir);
    // In a network namespace of its own: nothing but this datagram on its loopback; the stop follows 0.3 s later.
    const r = spawnSync("unshare", ["-n", "bash", "-c", `ip link set lo up\n${c.start}\necho k8slab >/dev/udp/127.0.0.1/9999\nsleep 0.3\n${c.stop}`], {
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(
      parsePcap(Buffer.from(r.stdout.trim(), "base64")).map((p) => [p.ip.proto, p.ip.dport]),
      [[17, 9999]],
    );
    assert.deepEqual(fs.readdirSync(dir), [], "the stop removes the capture's files");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a NodePort reply is the trace's at every point: after kube-proxy's NAT, and on the bridge half-way (SNAT undone, DNAT not yet)", () => {
  // Recorded on node2 of the container lab: the client's connection to node2:30080, its backend on node2.
  const [entry] = parseConntrack(
    "tcp      6 119 TIME_WAIT src=192.168.0.1 dst=192.168.0.22 sport=48191 dport=30080 src=172.30.2.6 dst=172.30.2.1 sport=80 dport=1069 [ASSURED] mark=0 use=1",
  );
  const tuples = [entry.original, ...natTuples(entry)];
  const at = (src: string, sport: number, dst: string, dport: number) => ({ src, sport, dst, dport });
  assert.ok(inFlow(tuples, at("192.168.0.1", 48191, "192.168.0.22", 30080)), "the request on the underlay");
  assert.ok(inFlow(tuples, at("172.30.2.1", 1069, "172.30.2.6", 80)), "the request on the bridge and veth, after DNAT and SNAT");
  assert.ok(inFlow(tuples, at("172.30.2.6", 80, "172.30.2.1", 1069)), "the reply leaving the pod");
  assert.ok(inFlow(tuples, at("172.30.2.6", 80, "192.168.0.1", 48191)), "the reply as cni0 sees it");
  assert.ok(inFlow(tuples, at("192.168.0.22", 30080, "192.168.0.1", 48191)), "the reply on the underlay");
  assert.ok(!inFlow(tuples, at("172.30.2.6", 80, "192.168.0.1", 48192)), "another connection of the same client");
});

test("a trace's source ports: distinct, below the kernel's ephemeral range, clear of every port the lab uses", () => {
  const [low] = fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
  for (let i = 0; i < 200; i++) {
    const ports = sourcePorts(3);
    assert.equal(new Set(ports).size, 3);
    for (const p of ports) assert.ok(p >= 20000 && p < Math.min(30000, low), `${p}`);
  }
});

test("a trace sends from the next source port when one is taken, and stops at the first that is not", async () => {
  const taken = new Set([21000, 22000]);
  const tried: number[] = [];
  const send = async (port: number) => {
    tried.push(port);
    return taken.has(port)
      ? { exitCode: 45, stdout: "", stderr: "curl: (45) bind failed: Address already in use" }
      : { exitCode: 0, stdout: "200", stderr: "" };
  };
  assert.deepEqual(await sendFromFreePort([21000, 22000, 23000], send), { port: 23000, exitCode: 0, output: "200" });
  assert.deepEqual(tried, [21000, 22000, 23000]);
  tried.length = 0;
  // A failure that is not a taken port is the answer: no other port is tried.
  const refused = async (port: number) => {
    tried.push(port);
    return { exitCode: 7, stdout: "", stderr: "curl: (7) Failed to connect" };
  };
  assert.deepEqual(await sendFromFreePort([21000, 22000], refused), { port: 21000, exitCode: 7, output: "curl: (7) Failed to connect" });
  assert.deepEqual(tried, [21000]);
  // dig's wording, and every spare taken: the last one's answer.
  const dig = async () => ({ exitCode: 1, stdout: "", stderr: ";; bind: address in use" });
  assert.equal((await sendFromFreePort([21000, 22000], dig)).port, 22000);
});

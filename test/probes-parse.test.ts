// The probes' parsers on recorded outputs (test/fixtures/probes): iproute2, etcdctl, iptables-save, tcpdump, ping, dig, curl.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import {
  curlCommand,
  nodePortRules,
  parseCurl,
  parseDig,
  parseFdb,
  parseFlannelLeases,
  parseIptablesNat,
  parseLinks,
  parseNeighbours,
  parsePing,
  parseResolvConf,
  parseRoutes,
  parseRows,
  parseTcpdumpUdp,
  parseVxlanLink,
  serviceRules,
} from "../scripts/probes/parse.ts";

const fixture = (f: string) => fs.readFileSync(path.join(import.meta.dirname, "fixtures/probes", f), "utf8");

test("flannel.1: VNI, port, MTU, local address and underlay NIC from ip -d -j link", () => {
  const d = parseVxlanLink(fixture("healthy/node1-flannel-link.json"));
  assert.deepEqual(
    { vni: d?.vni, port: d?.port, mtu: d?.mtu, local: d?.local, dev: d?.dev, mac: d?.mac, learning: d?.learning, up: d?.up },
    { vni: 1, port: 8472, mtu: 1450, local: "192.168.0.21", dev: "eth0", mac: "6e:2b:7f:0c:11:a1", learning: false, up: true },
  );
  assert.equal(parseVxlanLink(fixture("healthy/node1-addr-cni0.json")), undefined, "a bridge is not a VXLAN device");
  assert.equal(parseVxlanLink(""), undefined, "a missing device prints nothing on stdout");
});

test("routes, neighbours and FDB entries from ip -j and bridge -j", () => {
  const route = parseRoutes(fixture("healthy/node1-routes.json")).find((r) => r.dev === "flannel.1");
  assert.deepEqual(route, { dst: "172.30.2.0/24", gateway: "172.30.2.0", dev: "flannel.1", flags: ["onlink"] });
  assert.deepEqual(parseNeighbours(fixture("healthy/node1-neigh-flannel.json")), [{ dst: "172.30.2.0", mac: "9a:41:d3:5e:07:c2", state: ["PERMANENT"] }]);
  assert.deepEqual(parseFdb(fixture("healthy/node1-fdb-flannel.json")), [
    { mac: "9a:41:d3:5e:07:c2", dst: "192.168.0.22", flags: ["self"], state: "permanent" },
  ]);
  assert.deepEqual(parseFdb(fixture("faults/flanneld-stopped-node2-fdb-flannel.json")), []);
  // Learned bridge entries have an empty state and name the port.
  const learned = parseFdb(fixture("healthy/node1-fdb-cni0.json")).find((e) => e.mac === "1e:6b:52:0d:a3:f4");
  assert.deepEqual(learned, { mac: "1e:6b:52:0d:a3:f4", port: "veth91be04c2", flags: [], state: "" });
});

test("a pod's eth0 names its veth peer's ifindex on the node", () => {
  const [eth0] = parseLinks(fixture("healthy/toolbox-node1-eth0.json"));
  assert.deepEqual({ peer: eth0.peerIfindex, mac: eth0.mac, addresses: eth0.addresses }, { peer: 5, mac: "7e:d1:09:4a:5b:21", addresses: ["172.30.1.4/24"] });
  const veth = parseLinks(fixture("healthy/node1-links-cni0.json")).find((l) => l.ifindex === eth0.peerIfindex);
  assert.equal(veth?.name, "veth3f9c2a1b");
  assert.equal(veth?.master, "cni0");
});

test("flannel leases from etcdctl get --prefix", () => {
  assert.deepEqual(parseFlannelLeases(fixture("healthy/etcd-leases.txt")), [
    { subnet: "172.30.1.0/24", publicIP: "192.168.0.21", backendType: "vxlan", vni: 1, vtepMAC: "6e:2b:7f:0c:11:a1" },
    { subnet: "172.30.2.0/24", publicIP: "192.168.0.22", backendType: "vxlan", vni: 1, vtepMAC: "9a:41:d3:5e:07:c2" },
  ]);
  assert.deepEqual(parseFlannelLeases(""), []);
});

test("iptables-save: KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP -> DNAT, with counters", () => {
  const before = serviceRules(parseIptablesNat(fixture("healthy/node1-nat-counters-before.txt")), "10.254.83.121", 80);
  const after = serviceRules(parseIptablesNat(fixture("healthy/node1-nat-counters-after.txt")), "10.254.83.121", 80);
  assert.equal(before.svcChain, "KUBE-SVC-7QXJX3NLLCHBKGHZ");
  assert.equal(before.entry?.comment, "default/business-manager:http cluster IP");
  assert.deepEqual(
    before.endpoints.map((e) => [e.dnatTo, e.probability]),
    [
      ["172.30.1.5:80", 0.33333333349],
      ["172.30.2.3:80", 0.5],
      ["172.30.2.6:80", undefined],
    ],
  );
  const spread = after.endpoints.map((e, i) => e.packets! - before.endpoints[i].packets!);
  assert.deepEqual(spread, [9, 18, 3], "the burst's 30 connections, as the DNAT rules counted them");
  assert.equal(after.entry!.packets! - before.entry!.packets!, 30);
  // kube-proxy's rules flushed: the chains are declared, no rule is left.
  const flushed = parseIptablesNat(fixture("faults/nat-flushed-node1-counters.txt"));
  assert.ok(flushed.chains.has("KUBE-SERVICES"));
  assert.equal(flushed.rules.length, 0);
  assert.equal(serviceRules(flushed, "10.254.83.121", 80).entry, undefined);
});

test("iptables-save: KUBE-NODEPORTS -> KUBE-EXT -> KUBE-SVC", () => {
  const np = nodePortRules(parseIptablesNat(fixture("healthy/node2-nat.txt")), 30080);
  assert.equal(np.extChain, "KUBE-EXT-7QXJX3NLLCHBKGHZ");
  assert.equal(np.svcChain, "KUBE-SVC-7QXJX3NLLCHBKGHZ");
  assert.equal(np.endpoints.length, 3);
  assert.equal(nodePortRules(parseIptablesNat(fixture("healthy/node2-nat.txt")), 30081).entry, undefined);
});

test("tcpdump: VXLAN packets with the inner packet tcpdump prints under each", () => {
  const { packets, captured } = parseTcpdumpUdp(fixture("healthy/node2-capture-vxlan.txt") + fixture("healthy/capture-vxlan-stderr.txt"));
  assert.equal(captured, 6);
  assert.equal(packets.length, 6);
  assert.deepEqual(packets[0], {
    src: "192.168.0.21",
    srcPort: 57263,
    dst: "192.168.0.22",
    dstPort: 8472,
    vni: 1,
    inner: "IP 172.30.1.4 > 172.30.2.5: ICMP echo request, id 8863, seq 1, length 64",
  });
  // The underlay probe's datagram is not VXLAN: tcpdump decodes junk, the parser keeps addresses and ports.
  const [probe] = parseTcpdumpUdp(fixture("healthy/node2-capture-underlay.txt")).packets;
  assert.deepEqual([probe.src, probe.srcPort, probe.dstPort], ["192.168.0.21", 58472, 8472]);
  assert.equal(probe.inner, undefined);
});

test("ping summaries: replies, loss, ttl", () => {
  assert.deepEqual(parsePing(fixture("healthy/toolbox-node1-ping-node2-pod.txt")), { transmitted: 6, received: 6, ttl: 62, avgMs: 0.125 });
  assert.deepEqual(parsePing(fixture("faults/flanneld-stopped-ping-node2-pod.txt")), { transmitted: 6, received: 0 });
  assert.deepEqual(
    parsePing("5 packets transmitted, 4 packets received, 20% packet loss\nround-trip min/avg/max = 0.1/0.2/0.4 ms"),
    { transmitted: 5, received: 4, avgMs: 0.2 },
    "busybox",
  );
  assert.equal(parsePing(""), undefined);
});

test("dig: status, answers, and why nothing came back", () => {
  const a = parseDig(fixture("healthy/dig-business-manager.txt"));
  assert.equal(a.status, "NOERROR");
  assert.deepEqual(a.answers, [{ name: "business-manager.default.svc.cluster.local.", ttl: 30, type: "A", data: "10.254.83.121" }]);
  assert.equal(parseDig(fixture("healthy/dig-headless.txt")).answers.length, 3);
  assert.equal(parseDig(fixture("healthy/dig-miss.txt")).status, "NXDOMAIN");
  const down = parseDig(fixture("faults/coredns-scaled-to-0-dig-svc.txt"));
  assert.equal(down.status, undefined);
  assert.equal(down.error, "communications error to 10.254.0.2#53: connection refused");
});

test("resolv.conf and kubectl jsonpath rows", () => {
  assert.deepEqual(parseResolvConf(fixture("healthy/toolbox-node1-resolv.conf")), {
    nameservers: ["10.254.0.2"],
    search: ["k8slab-probe.svc.cluster.local", "svc.cluster.local", "cluster.local"],
  });
  assert.deepEqual(parseRows(fixture("healthy/kubectl-service-kube-dns.txt")), [["10.254.0.2", "53", ""]]);
});

test("curl: status, peer and body, or curl's reason", () => {
  const ok = parseCurl({ stdout: fixture("healthy/outside-ingress-readyz.txt"), stderr: "", exitCode: 0 });
  assert.equal(ok.status, 200);
  assert.equal(ok.remote, "192.168.0.21:80");
  assert.equal(JSON.parse(ok.body).businessManager.pod, "business-manager-6d8f9c7b5-p8tzr");
  const refused = parseCurl({
    stdout: fixture("faults/ingress-stopped-curl.txt"),
    stderr: "curl: (7) Failed to connect to 192.168.0.21 port 80 after 0 ms: Could not connect to server\n",
    exitCode: 7,
  });
  assert.deepEqual(
    [refused.status, refused.remote, refused.error],
    [0, undefined, "curl: (7) Failed to connect to 192.168.0.21 port 80 after 0 ms: Could not connect to server"],
  );
  assert.match(
    curlCommand("http://192.168.0.21:80/", { host: "k8s.test.com" }),
    /^curl -sS --connect-timeout 2 -m 5 -H 'Host: k8s\.test\.com' -w '\\nk8slab-curl: /,
  );
});

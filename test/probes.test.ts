// Each tier's probe on recorded outputs of the reference lab, healthy and broken, and the runner's tiered verdicts.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import type { Lab } from "../core/index.ts";
import { pause } from "../core/shell.ts";
import { loadLab } from "../scripts/lab-file.ts";
import { KUBE_PROXY_CATCH_UP, paceFactor, TIER_DEPENDENCIES, TIER_IDS, type TierId } from "../scripts/probes/contract.ts";
import { nodePaces, PACE_COMMAND } from "../scripts/probes/live.ts";
import { type RunOptions, runProbes } from "../scripts/probes/runner.ts";
import { broken, type ClusterReader, type ProbeReport, type Tier, type TierResult } from "../scripts/probes/types.ts";
import { type Recording, replay } from "./fixtures/probes/replay.ts";
import { faults, healthy, withFault } from "./fixtures/probes/scenarios.ts";

const loaded = loadLab(path.join(import.meta.dirname, "../labs/two-node.yaml"));
assert.ok(loaded.ok);
const lab: Lab = loaded.lab;

async function probe(recordings: Recording[], opts: RunOptions = {}): Promise<ProbeReport> {
  const access = replay(recordings);
  const report = await runProbes(lab, access, opts);
  assert.deepEqual(access.unmatched, [], "every command the probes ran has a recording");
  return report;
}

const result = (report: ProbeReport, tier: TierId): TierResult => {
  const r = report.results.find((r) => r.tier === tier);
  assert.ok(r, `no result for ${tier}`);
  return r;
};
const hop = (r: TierResult, name: string) => {
  const h = r.hops.find((h) => h.name === name);
  assert.ok(h, `${r.tier} has no hop "${name}"; it has: ${r.hops.map((h) => h.name).join(" | ")}`);
  return h;
};
const verdicts = (report: ProbeReport) => Object.fromEntries(report.results.map((r) => [r.tier, r.blockedBy ? `blocked by ${r.blockedBy}` : r.verdict]));

test("a healthy lab: all nine tiers pass, bottom-up, each with its evidence", async () => {
  const report = await probe(healthy);
  assert.deepEqual(
    report.results.map((r) => r.tier),
    [...TIER_IDS],
  );
  assert.ok(report.ok);
  for (const r of report.results) {
    assert.equal(r.verdict, "pass", `${r.tier}: ${r.firstBrokenHop}`);
    assert.ok(r.evidence.length > 0 && r.hops.length > 0, r.tier);
    assert.ok(
      r.evidence.every((e) => e.command && typeof e.exitCode === "number"),
      r.tier,
    );
  }
});

for (const tier of TIER_IDS) {
  test(`${tier} alone, on healthy recordings, passes and runs nothing else`, async () => {
    const report = await probe(healthy, { tiers: [tier] });
    assert.deepEqual(verdicts(report), { [tier]: "pass" });
  });
}

test("pod-cross-node explains the path with live values, and the capture proves the encapsulation", async () => {
  const r = result(await probe(healthy, { tiers: ["pod-cross-node"] }), "pod-cross-node");
  assert.deepEqual(
    r.hops.map((h) => h.name),
    [
      "pod eth0 (node1)",
      "veth (node1)",
      "cni0 (node1)",
      "flannel.1 (node1)",
      "FDB entry (node1)",
      "eth0 as UDP 8472",
      "flannel.1 (node2)",
      "cni0 (node2)",
      "pod eth0 (node2)",
      "1450-byte packets",
    ],
  );
  assert.match(hop(r, "1450-byte packets").detail, /^172\.30\.1\.4 -> 172\.30\.2\.5, Don't Fragment: 2\/2 replies$/);
  assert.match(hop(r, "veth (node1)").detail, /veth3f9c2a1b \(ifindex 5\), a port of cni0/);
  assert.match(hop(r, "cni0 (node1)").detail, /cni0 172\.30\.1\.1\/24 .* routes 172\.30\.2\.5 via 172\.30\.2\.0 dev flannel\.1/);
  assert.match(hop(r, "FDB entry (node1)").detail, /9a:41:d3:5e:07:c2 dst 192\.168\.0\.22/);
  assert.match(
    hop(r, "eth0 as UDP 8472").detail,
    /6 x 192\.168\.0\.21\.\d+ > 192\.168\.0\.22\.8472 VNI 1, inside: IP 172\.30\.1\.4 > 172\.30\.2\.5: ICMP echo request/,
  );
  assert.ok(r.evidence.some((e) => e.where === "node2" && /tcpdump .*-i eth0 .*udp dst port 8472/.test(e.command)));
  const order = r.evidence
    .map((e) => (/setsid .*tcpdump/.test(e.command) ? "listen" : /^ping /m.test(e.command) ? "ping" : /vxlan-from-.*\.rc/.test(e.command) ? "collect" : ""))
    .filter(Boolean);
  assert.deepEqual(order, ["listen", "ping", "ping", "collect"], "the pings are sent only once node2's capture listens");
});

test("pod-cross-node fails when the capture holds no encapsulated ping, even if ping answers", async () => {
  // Stopped after the pings, with nothing seen.
  const noCapture: Recording = { where: "node2", command: /\/run\/k8slab-probe\/vxlan-from-192\.168\.0\.21-[\d.]+\.rc/, stdout: "" };
  const r = result(await probe([noCapture, ...healthy], { tiers: ["pod-cross-node"] }), "pod-cross-node");
  assert.equal(r.verdict, "fail");
  assert.match(r.firstBrokenHop!, /^eth0 as UDP 8472: no VXLAN packet carrying 172\.30\.1\.4 > 172\.30\.2\.5 reached node2's eth0/);
});

test("pod-cross-node with node2's FDB gone: the requests arrive encapsulated, no reply comes back", async () => {
  const r = result(await probe(withFault(faults.flanneldStoppedOnNode2), { tiers: ["pod-cross-node"] }), "pod-cross-node");
  assert.equal(r.verdict, "fail");
  assert.equal(hop(r, "eth0 as UDP 8472").ok, true);
  assert.match(r.firstBrokenHop!, /^pod eth0 \(node2\): toolbox-q9m4w 172\.30\.2\.5: 0\/6 replies/);
});

test("an MTU narrower than the pods': small pings cross, full-size ones do not, and the tier names the MTU", async () => {
  const r = result(await probe(withFault(faults.mtuTooSmall), { tiers: ["pod-cross-node"] }), "pod-cross-node");
  assert.equal(r.verdict, "fail");
  assert.equal(hop(r, "pod eth0 (node2)").ok, true, "small packets still cross");
  assert.match(r.firstBrokenHop!, /^1450-byte packets: 172\.30\.1\.4 -> 172\.30\.2\.5, Don't Fragment: 0\/2 replies/);
  assert.match(r.likelyFix!, /the MTUs along the path disagree/);
});

test("flanneld stopped on node2 with its FDB entries removed: flannel names node2's missing FDB entry; the tiers above are blocked", async () => {
  const report = await probe(withFault(faults.flanneldStoppedOnNode2));
  assert.equal(report.ok, false);
  assert.deepEqual(verdicts(report), {
    underlay: "pass",
    flannel: "fail",
    "pod-same-node": "blocked by flannel",
    "pod-cross-node": "blocked by flannel",
    service: "blocked by flannel",
    dns: "blocked by flannel",
    nodeport: "blocked by flannel",
    ingress: "blocked by flannel",
    "business-flow": "blocked by flannel",
  });
  const flannel = result(report, "flannel");
  assert.equal(flannel.firstBrokenHop, "node2 FDB entry for node1's VTEP: missing: 6e:2b:7f:0c:11:a1 should go to dst 192.168.0.21");
  assert.match(flannel.likelyFix!, /flanneld on node2 .* it is inactive: `systemctl restart flanneld` on node2/);
  // Only what the evidence shows is wrong: node2's route and neighbour entry are still there.
  assert.equal(hop(flannel, "node2 route to node1's pods").ok, true);
  assert.equal(hop(flannel, "node2 neighbour for node1's VTEP").ok, true);
  assert.equal(hop(flannel, "node1 FDB entry for node2's VTEP").ok, true);
  assert.equal(result(report, "pod-cross-node").evidence.length, 0, "a blocked tier does not run");
});

test("flannel: a lease whose VTEP MAC no longer matches the device is a broken hop", async () => {
  const oldLease = {
    where: "node1",
    command: /etcdctl/,
    stdout:
      '/coreos.com/network/subnets/172.30.1.0-24\n{"PublicIP":"192.168.0.21","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}}\n' +
      '/coreos.com/network/subnets/172.30.2.0-24\n{"PublicIP":"192.168.0.22","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"9a:41:d3:5e:07:c2"}}\n',
  };
  const r = result(await probe([oldLease, ...healthy], { tiers: ["flannel"] }), "flannel");
  assert.match(r.firstBrokenHop!, /^node1 flannel\.1: .*MAC 6e:2b:7f:0c:11:a1, but its lease says aa:bb:cc:dd:ee:01/);
  // node2's entries point at the MAC the device really has, which no lease explains now.
  assert.match(hop(r, "node2 stale entries").detail, /FDB 6e:2b:7f:0c:11:a1 dst 192\.168\.0\.21/);
  assert.equal(hop(r, "node2 stale entries").ok, true, "stale entries carry no packet: reported, not failed");
});

test("underlay: UDP 8472 dropped between the nodes", async () => {
  const dropped: Recording = {
    where: "node2",
    command: /\/run\/k8slab-probe\/underlay-from-192\.168\.0\.21-[\d.]+\.rc/,
    stdout: "",
    stderrFile: "healthy/capture-stderr.txt",
  };
  const r = result(await probe([dropped, ...healthy], { tiers: ["underlay"] }), "underlay");
  assert.equal(hop(r, "node1 -> node2 ICMP").ok, true);
  assert.match(r.firstBrokenHop!, /^node1 -> node2 UDP 8472: datagrams sent from 192\.168\.0\.21:58472, none seen on node2's eth0/);
});

test("service: counters before and after show the spread over the 3 replicas", async () => {
  const r = result(await probe(healthy, { tiers: ["service"] }), "service");
  assert.match(hop(r, "KUBE-SERVICES (node1)").detail, /-d 10\.254\.83\.121\/32 tcp dpt:80 -> KUBE-SVC-7QXJX3NLLCHBKGHZ: \+30 connections/);
  assert.match(hop(r, "KUBE-SVC-7QXJX3NLLCHBKGHZ").detail, /spread 9\/18\/3; EndpointSlice: 3 ready of 3 replicas/);
  assert.match(hop(r, "KUBE-SEP-2XKQ5LJ7VYH3RNA4").detail, /DNAT to 172\.30\.1\.5:80 \(business-manager-6d8f9c7b5-h2kxw on node1\): \+9 connections/);
  assert.equal(r.evidence.filter((e) => e.command === "iptables-save -t nat -c").length, 2, "counters read before and after");
});

test("kube-proxy's nat rules flushed on node1: service names the missing KUBE-SERVICES rule; the tiers above are blocked", async () => {
  const report = await probe(withFault(faults.natFlushedOnNode1));
  const service = result(report, "service");
  assert.equal(service.verdict, "fail");
  assert.match(service.firstBrokenHop!, /^KUBE-SERVICES \(node1\): no rule for 10\.254\.83\.121:80 \(default\/business-manager\)/);
  assert.match(service.firstBrokenHop!, /curl: \(28\)/, "one bounded request shows what that means for a packet");
  assert.match(service.likelyFix!, /systemctl restart kube-proxy/);
  assert.deepEqual(
    ["dns", "nodeport", "ingress", "business-flow"].map((t) => verdicts(report)[t]),
    ["blocked by service", "blocked by service", "blocked by service", "blocked by service"],
  );
  assert.ok(!service.evidence.some((e) => e.command.startsWith("for i in")), "no burst of 30 into a dead path");
});

/** The service tier's read again, after the pause that lets kube-proxy catch up. */
const waitThenRead = `${pause(KUBE_PROXY_CATCH_UP.everySec)}; iptables-save -t nat -c`;
const literal = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const readAgain = new RegExp(`^${literal(waitThenRead)}$`);

test("service: fewer ready endpoints than replicas is a broken hop", async () => {
  const two: Recording = {
    where: "kubectl",
    command: /service-name=business-manager /,
    stdout:
      "172.30.1.5\ttrue\tnode1\tbusiness-manager-6d8f9c7b5-h2kxw\n172.30.2.3\ttrue\tnode2\tbusiness-manager-6d8f9c7b5-p8tzr\n172.30.2.6\tfalse\tnode2\tbusiness-manager-6d8f9c7b5-wq4nd\n",
  };
  // The table still has the third pod: read again until the bounded wait ends.
  const stillThree: Recording = { where: "node1", command: readAgain, file: "healthy/node1-nat-counters-before.txt" };
  const r = result(await probe([two, stillThree, ...healthy], { tiers: ["service"] }), "service");
  assert.match(r.firstBrokenHop!, /^KUBE-SVC-7QXJX3NLLCHBKGHZ: .*EndpointSlice: 2 ready of 3 replicas/);
  assert.match(r.likelyFix!, /fewer ready pods than replicas/);
});

test("service: a table behind the EndpointSlice is read again on the node until kube-proxy catches up", async () => {
  const behind: Recording = {
    where: "node1",
    command: /^iptables-save -t nat -c$/,
    file: ["faults/kube-proxy-behind-node1-nat-counters.txt", "healthy/node1-nat-counters-after.txt"],
  };
  const caughtUp: Recording = { where: "node1", command: readAgain, file: "healthy/node1-nat-counters-before.txt" };
  const r = result(await probe([behind, caughtUp, ...healthy], { tiers: ["service"] }), "service");
  assert.equal(r.verdict, "pass", r.firstBrokenHop);
  assert.match(hop(r, "KUBE-SVC-7QXJX3NLLCHBKGHZ").detail, /spread 9\/18\/3; .*kube-proxy caught up with the EndpointSlice after 2 s/);
  assert.equal(r.evidence.filter((e) => e.command === waitThenRead).length, 1, "one more read, on the node");
});

test("service: a table that never catches up fails after the bounded wait, naming kube-proxy", async () => {
  const behind: Recording = {
    where: "node1",
    command: new RegExp(`^(${literal(waitThenRead)}|iptables-save -t nat -c)$`),
    file: "faults/kube-proxy-behind-node1-nat-counters.txt",
  };
  const r = result(await probe([behind, ...healthy], { tiers: ["service"] }), "service");
  assert.match(r.firstBrokenHop!, /^KUBE-SVC-7QXJX3NLLCHBKGHZ: 2 endpoints .*EndpointSlice: 3 ready of 3 replicas$/);
  assert.match(r.likelyFix!, /the rules do not match the EndpointSlice \(20 s after it\): .*systemctl restart kube-proxy/);
  assert.equal(r.evidence.filter((e) => e.command === waitThenRead).length, 10);
});

test("CoreDNS scaled to 0: dns fails on the Service without endpoints; the business flow is blocked, ingress and NodePort still pass", async () => {
  const report = await probe(withFault(faults.corednsScaledToZero));
  const dns = result(report, "dns");
  assert.equal(dns.firstBrokenHop, "Service kube-system/kube-dns: 10.254.0.2:53 -> no ready CoreDNS endpoint");
  assert.match(dns.likelyFix!, /scale deployment coredns/);
  assert.match(hop(dns, "A business-manager.default.svc.cluster.local").detail, /communications error to 10\.254\.0\.2#53: connection refused/);
  assert.deepEqual([verdicts(report).nodeport, verdicts(report).ingress, verdicts(report)["business-flow"]], ["pass", "pass", "blocked by dns"]);
});

test("ingress controller stopped: ingress fails with connection refused on node:80", async () => {
  const report = await probe(withFault(faults.ingressStopped));
  const ingress = result(report, "ingress");
  assert.match(ingress.firstBrokenHop!, /^192\.168\.0\.1 -> node1:80: connection refused .*no ingress controller pod in nginx-ingress/);
  assert.match(ingress.likelyFix!, /start the ingress controller/);
  assert.equal(verdicts(report)["business-flow"], "blocked by ingress");
});

test("data-product down: the business flow names the gRPC hop and its status", async () => {
  const report = await probe(withFault(faults.dataProductDown));
  const flow = result(report, "business-flow");
  assert.equal(hop(flow, "nginx -> business-manager").ok, true);
  assert.match(flow.firstBrokenHop!, /^business-manager -> data-product \(gRPC data-product:50051\): HTTP 502: gRPC UNAVAILABLE/);
});

test("a lab that is not up: underlay fails on ssh, every other tier is blocked by it", async () => {
  const report = await probe(withFault(faults.labDown));
  assert.equal(result(report, "underlay").firstBrokenHop, "ssh to node1: ssh: connect to host 127.0.0.1 port 2221: Connection refused");
  assert.match(result(report, "underlay").likelyFix!, /npx k8slab up/);
  assert.ok(report.results.slice(1).every((r) => r.verdict === "blocked" && r.blockedBy === "underlay"));
});

test("a command's own exit 255 is its answer, not a lost node: flannel.1 missing on node1 (flanneld not started yet) names the device", async () => {
  const missing: Recording = { where: "node1", command: /^ip -d -j link show flannel\.1$/, stderr: 'Cannot find device "flannel.1"\n', exitCode: 255 };
  const r = result(await probe([missing, ...healthy], { tiers: ["flannel"] }), "flannel");
  assert.equal(r.verdict, "fail");
  assert.equal(r.firstBrokenHop, "node1 flannel.1: missing");
  assert.match(r.likelyFix!, /flanneld on node1/);
});

test("dns: a pod that became ready after the run's first EndpointSlice read is no fault: a second read after the answer decides", async () => {
  const headless = (files: string[]): Recording => ({ where: "kubectl", command: /service-name=data-product-headless /, file: files });
  const starting = "faults/kubectl-endpoints-data-product-headless-one-starting.txt";
  const became = result(await probe([headless([starting, "healthy/kubectl-endpoints-data-product-headless.txt"]), ...healthy], { tiers: ["dns"] }), "dns");
  assert.equal(became.verdict, "pass", became.firstBrokenHop);
  assert.equal(became.evidence.filter((e) => /service-name=data-product-headless/.test(e.command)).length, 2, "both reads are evidence");
  // Still not ready on the second look: CoreDNS answers with a pod that is not ready.
  const stale = result(await probe([headless([starting]), ...healthy], { tiers: ["dns"] }), "dns");
  assert.equal(stale.verdict, "fail");
  assert.match(
    stale.firstBrokenHop!,
    /^A data-product-headless\.default\.svc\.cluster\.local: 172\.30\.1\.6, 172\.30\.1\.7, 172\.30\.2\.4 .*ready pods: 172\.30\.1\.6, 172\.30\.2\.4$/,
  );
});

test("a one-node lab: the underlay and cross-node tiers are skipped, not failed", async () => {
  const one = { ...lab, nodes: lab.nodes.slice(0, 1) } as Lab;
  const report = await runProbes(one, replay(healthy), { tiers: ["underlay", "pod-cross-node"] });
  assert.deepEqual(verdicts(report), { underlay: "skipped", "pod-cross-node": "skipped" });
  assert.ok(report.ok);
});

// The runner alone, with stand-in tiers.
const stub = (id: TierId, run: Tier["run"] = async (ctx) => void ctx.hop("ok", "fine", true)): Tier => ({ id, title: id, run });

test("blocked names the lowest broken tier, through tiers that are themselves blocked", async () => {
  const modules = TIER_IDS.map((id) =>
    id === "pod-same-node"
      ? stub(id, async () => broken("bridge", "down", "fix it"))
      : id === "pod-cross-node"
        ? stub(id, async () => broken("vxlan", "down"))
        : stub(id),
  );
  const report = await runProbes(lab, replay([]), { modules });
  assert.deepEqual(verdicts(report), {
    underlay: "pass",
    flannel: "pass",
    "pod-same-node": "fail",
    "pod-cross-node": "fail",
    service: "blocked by pod-same-node",
    dns: "blocked by pod-same-node",
    nodeport: "blocked by pod-same-node",
    ingress: "blocked by pod-same-node",
    "business-flow": "blocked by pod-same-node",
  });
  assert.equal(result(report, "pod-same-node").likelyFix, "fix it");
});

test("a soft dependency does not block, but a failure notes it", async () => {
  const modules = TIER_IDS.map((id) => (id === "dns" || id === "ingress" ? stub(id, async () => broken(id, "down", `fix ${id}`)) : stub(id)));
  const report = await runProbes(lab, replay([]), { modules });
  assert.equal(result(report, "ingress").verdict, "fail");
  assert.equal(result(report, "ingress").likelyFix, "fix ingress (also broken: dns)");
  assert.equal(result(report, "business-flow").blockedBy, "dns");
});

test("every tier runs from the start of the run; only a tier's `after` waits for that tier's run; verdicts come bottom-up", async () => {
  const events: string[] = [];
  let allStarted!: () => void;
  const together = new Promise<void>((resolve) => (allStarted = resolve));
  const waiting = TIER_IDS.filter((id) => !TIER_DEPENDENCIES[id].after?.length);
  const modules = TIER_IDS.map((id) =>
    stub(id, async (ctx) => {
      events.push(`start ${id}`);
      // Each tier with nothing to wait for waits for all the others to start: run one after another, this would never end.
      if (waiting.includes(id)) {
        if (waiting.every((w) => events.includes(`start ${w}`))) allStarted();
        await together;
      }
      events.push(`end ${id}`);
      ctx.hop("ok", "fine", true);
    }),
  );
  const reported: string[] = [];
  const report = await runProbes(lab, replay([]), { modules, tierTimeoutSec: 2, onResult: (r) => reported.push(r.tier) });
  assert.ok(report.ok, JSON.stringify(verdicts(report)));
  const at = (e: string) => events.indexOf(e);
  for (const tier of TIER_IDS) {
    for (const dep of TIER_DEPENDENCIES[tier].after ?? []) assert.ok(at(`end ${dep}`) < at(`start ${tier}`), `${tier} started before ${dep} ended`);
    for (const dep of TIER_DEPENDENCIES[tier].hard) assert.ok(reported.indexOf(dep) < reported.indexOf(tier), `${tier} was reported before ${dep}`);
  }
  assert.ok(at("start nodeport") > at("end service"), "NodePort's requests wait for the service tier's counters");
  assert.deepEqual(
    report.results.map((r) => r.tier),
    [...TIER_IDS],
    "reported bottom-up whatever the order they ended in",
  );
});

test("a tier above a broken one is blocked whatever its own run saw, and is not run again when it overran", async () => {
  let businessFlowRuns = 0;
  const modules = TIER_IDS.map((id) =>
    id === "underlay"
      ? stub(id, async (ctx) => void ctx.hop("ICMP", "no replies", false))
      : id === "business-flow"
        ? stub(id, async (ctx) => {
            businessFlowRuns++;
            await ctx.onNode("node1", "sleep infinity", 1);
          })
        : stub(id),
  );
  const report = await runProbes(lab, replay([{ where: "node1", command: /^sleep/, hang: true }]), { modules, tierTimeoutSec: 0.2 });
  assert.equal(result(report, "underlay").verdict, "fail");
  for (const id of TIER_IDS.slice(1)) assert.equal(result(report, id).blockedBy, "underlay", id);
  assert.ok(!report.ok);
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(businessFlowRuns, 1, "an overrun of a blocked tier is not retried");
});

test("--tier runs only the selected tiers, and blocks among them only", async () => {
  const calls: string[] = [];
  const modules = TIER_IDS.map((id) =>
    stub(id, async (ctx) => {
      calls.push(id);
      ctx.hop("ok", "fine", id !== "service");
    }),
  );
  const report = await runProbes(lab, replay([]), { modules, tiers: ["dns", "service"] });
  assert.deepEqual(calls.sort(), ["dns", "service"]);
  assert.deepEqual(verdicts(report), { service: "fail", dns: "blocked by service" });
});

/** How busy the nodes say they are when a tier comes out inconclusive. */
const busyNodes: Recording = {
  where: /^node[12]$/,
  command: /^read -r some <\/proc\/pressure\/cpu/,
  stdout: "some avg10=96.50 avg60=94.20 avg300=90.00 total=123\nloadavg 17.20 16.90 15.00 5/300 1234\n",
};

test("a probe that throws fails its tier; a step that never answers, twice, leaves it inconclusive, not failed", async () => {
  const thrown = stub("underlay", async () => {
    throw new Error("unexpected output");
  });
  const report = await runProbes(lab, replay([]), { modules: [thrown], tiers: ["underlay"] });
  assert.match(result(report, "underlay").firstBrokenHop!, /^probe: error: unexpected output/);

  const hangs = stub("underlay", async (ctx) => void (await ctx.onNode("node1", "sleep infinity", 1)));
  const started = Date.now();
  const hung = await runProbes(lab, replay([busyNodes, { where: "node1", command: /./, hang: true }]), {
    modules: [hangs],
    tiers: ["underlay"],
    tierTimeoutSec: 0.2,
  });
  assert.equal(result(hung, "underlay").verdict, "inconclusive");
  assert.match(result(hung, "underlay").reason!, /did not finish within 0\.2 s/);
  assert.ok(!hung.ok);
  assert.ok(Date.now() - started < 2000);
});

const digService = healthy.find((r) => r.command.test("dig +time=2 +tries=1 @10.254.0.2 business-manager.default.svc.cluster.local A"))!;

test("a step that overran its deadline once is asked again: the tier passes on the retry, and says it was run again", async () => {
  const report = await probe([{ ...digService, overran: 1 }, ...healthy], { tiers: ["dns"] });
  const dns = result(report, "dns");
  assert.equal(dns.verdict, "pass");
  assert.match(
    dns.retried!,
    /^`dig \+time=2 \+tries=1 @10\.254\.0\.2 business-manager\.default\.svc\.cluster\.local A` on pod k8slab-probe\/toolbox-7xk2p overran its deadline/,
  );
  assert.equal(dns.evidence.filter((e) => /business-manager\.default/.test(e.command)).length, 2, "both runs' evidence is kept");
  assert.ok(report.ok);
});

test("a step that overran twice: the tier is inconclusive with the nodes' CPU pressure and load, the tiers on it are blocked, the run is not ok", async () => {
  const report = await probe([busyNodes, { ...digService, overran: true }, ...healthy]);
  const dns = result(report, "dns");
  assert.equal(dns.verdict, "inconclusive");
  assert.equal(dns.firstBrokenHop, undefined, "no hop is called broken");
  assert.match(
    dns.reason!,
    /overran its deadline \(15\.0 s\), twice .*node1: CPU pressure 96\.5% \(10 s\) 94\.2% \(60 s\), load 17\.2 16\.9 15; node2: CPU pressure/,
  );
  assert.ok(
    dns.evidence.some((e) => e.where === "node2" && /pressure/.test(e.command)),
    "the load reads are evidence",
  );
  assert.deepEqual(verdicts(report), {
    underlay: "pass",
    flannel: "pass",
    "pod-same-node": "pass",
    "pod-cross-node": "pass",
    service: "pass",
    dns: "inconclusive",
    nodeport: "pass",
    ingress: "pass",
    "business-flow": "blocked by dns",
  });
  assert.ok(!report.ok);
});

test("a kubectl read that overran is made afresh by the retry, not served from the run's shared reads", async () => {
  const podsRead = healthy.find((r) => r.command.test("kubectl get pods -n k8slab-probe -l app=toolbox -o x"))!;
  const access = replay([{ ...podsRead, overran: 1 }, ...healthy]);
  const report = await runProbes(lab, access, { tiers: ["pod-same-node"] });
  assert.equal(result(report, "pod-same-node").verdict, "pass");
  assert.equal(access.calls.filter((c) => /app=toolbox/.test(c.command)).length, 2);
});

test("every tier's lookups start with the run, before any tier has ended", async () => {
  const events: string[] = [];
  const modules = TIER_IDS.map(
    (id): Tier => ({
      ...stub(id, async (ctx) => {
        events.push(`start ${id}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
        events.push(`end ${id}`);
        ctx.hop("ok", "fine", true);
      }),
      lookups: async () => void events.push(`lookups ${id}`),
    }),
  );
  const report = await runProbes(lab, replay([]), { modules });
  assert.ok(report.ok, JSON.stringify(verdicts(report)));
  const at = (e: string) => events.indexOf(e);
  for (const tier of TIER_IDS) {
    assert.ok(at(`lookups ${tier}`) >= 0 && at(`lookups ${tier}`) < at("end underlay"), `${tier}'s lookups began late`);
  }
});

test("a node read a tier's lookups made is handed to the tier's first identical call, then made afresh", async () => {
  const access = replay([{ where: "node1", command: /^iptables-save/, stdout: "rules\n" }]);
  const read = (ctx: Pick<ClusterReader, "onNode">) => ctx.onNode("node1", "iptables-save -t nat", 5);
  const modules = TIER_IDS.map(
    (id): Tier =>
      id === "service"
        ? {
            ...stub(id, async (ctx) => {
              await read(ctx); // answered by the lookup
              await read(ctx); // a second look: made now
              ctx.hop("ok", "fine", true);
            }),
            lookups: (ctx) => read(ctx),
          }
        : stub(id),
  );
  const report = await runProbes(lab, access, { modules });
  assert.ok(report.ok);
  assert.equal(access.calls.length, 2, "one early read, one afresh");
  assert.equal(result(report, "service").evidence.length, 2, "both are the tier's evidence");
});

test("kubectl reads are made once per run and shared by the tiers", async () => {
  const access = replay(healthy);
  await runProbes(lab, access);
  const toolboxReads = access.calls.filter((c) => c.where === "kubectl" && /app=toolbox/.test(c.command));
  assert.equal(toolboxReads.length, 1);
});

test("a whole tier's limit follows the slowest node's measured pace", async () => {
  const slowTier = stub("underlay", async (ctx) => {
    await new Promise((resolve) => setTimeout(resolve, 300)); // a tier that takes 0.3 s, under a 0.2 s limit sized for a fast node
    ctx.hop("ok", "fine", true);
  });
  const atPace = (factor: number) => Object.assign(replay([]), { pace: async () => [{ node: "node1", processStartMs: Math.round(34 * factor), factor }] });
  const slow = await runProbes(lab, atPace(4), { modules: [slowTier], tierTimeoutSec: 0.2 });
  assert.equal(result(slow, "underlay").verdict, "pass", "on a node four times slower the limit is 0.8 s");
  assert.deepEqual(slow.pace, [{ node: "node1", processStartMs: 136, factor: 4 }], "the report says what the deadlines were");
  const fast = await runProbes(lab, atPace(1), { modules: [slowTier], tierTimeoutSec: 0.2 });
  assert.equal(result(fast, "underlay").verdict, "inconclusive", "at the reference pace the same tier overran");
});

test("a node's pace: its process start against the one the deadlines were sized for, bounded", async () => {
  assert.equal(paceFactor(undefined), 1);
  assert.equal(paceFactor(20), 1, "a faster node keeps the deadlines");
  assert.equal(paceFactor(34), 1);
  assert.equal(paceFactor(143), 4.2);
  assert.equal(paceFactor(5000), 8, "a node slower than that is inconclusive, not waited for");
  // The node's own measurement, run here: one integer, the ms of one /bin/true.
  const out = execFileSync("bash", ["-c", PACE_COMMAND], { encoding: "utf8" });
  assert.match(out, /^\d+\n$/);
  assert.ok(Number(out) < 1000, out);
});

test("a node where a step overran gets at least twice its stretch, and is measured again; one too busy to measure, the widest", async () => {
  const answers: Record<string, { stdout: string; overran?: true }[]> = {
    node1: [{ stdout: "38" }, { stdout: "40" }, { stdout: "300" }],
    node2: [{ stdout: "", overran: true }, { stdout: "34" }],
  };
  const asked: string[] = [];
  const { paceOf, overranOn } = nodePaces(async (node) => {
    asked.push(node);
    const a = answers[node].shift()!;
    return {
      where: node,
      command: PACE_COMMAND,
      exitCode: a.overran ? 124 : 0,
      stdout: a.stdout,
      stderr: "",
      ms: 1,
      ...(a.overran ? { overran: a.overran } : {}),
    };
  });
  assert.equal((await paceOf("node1")).factor, 1.1, "measured in a quiet moment");
  assert.equal((await paceOf("node1")).factor, 1.1, "once per run");
  await overranOn(["node1"]);
  assert.deepEqual(await paceOf("node1"), { node: "node1", processStartMs: 40, factor: 2.2 }, "measured again: still quick, yet twice the stretch it had");
  await overranOn(["node1"]);
  assert.equal((await paceOf("node1")).factor, 8, "the measure itself now says slow (300 ms: x8.8), bounded to 8");
  assert.equal((await paceOf("node2")).factor, 8, "too busy to be measured: the widest deadlines");
  assert.deepEqual(await paceOf("node2"), { node: "node2", processStartMs: 34, factor: 1 }, "and measured again on the next ask");
  assert.deepEqual(asked, ["node1", "node1", "node1", "node2", "node2"]);
});

test("the waits of busy servers follow their node's pace: etcdctl's on the control plane, dig's in the pod, curl's through the ingress", async () => {
  const commands = async (factor: number) => {
    const access = Object.assign(replay(healthy), {
      pace: async () => lab.nodes.map((n) => ({ node: n.name, processStartMs: Math.round(34 * factor), factor })),
    });
    const report = await runProbes(lab, access, { tiers: ["underlay", "flannel", "pod-same-node", "service", "dns", "nodeport", "ingress", "business-flow"] });
    assert.ok(report.ok, JSON.stringify(verdicts(report)));
    return report.results.flatMap((r) => r.evidence.map((e) => e.command)).join("\n");
  };
  const reference = await commands(1);
  assert.match(reference, /--dial-timeout=8s --command-timeout=10s get/);
  assert.match(reference, /dig \+time=2 /);
  assert.match(reference, /-m 10 -H 'Host: /);
  const slow = await commands(4.5);
  assert.match(slow, /--dial-timeout=36s --command-timeout=45s get/);
  assert.match(slow, /dig \+time=9 /);
  assert.match(slow, /-m 45 -H 'Host: /);
  assert.match(slow, /curl -s -o \/dev\/null --connect-timeout 5 -m 9 --fail-early/, "the service tier's burst");
  assert.match(reference, /curl -s -o \/dev\/null --connect-timeout 1 -m 2 --fail-early/);
});

test("a capture that could not look is no finding: one that did not start, or ran out before its pings, makes the tier inconclusive, not failed", async () => {
  const vxlanCollect = /^for \(\(i = 0; .*\/run\/k8slab-probe\/vxlan-from-192\.168\.0\.21-[\d.]+\.rc/;
  const ranOut: Recording = { where: "node2", command: vxlanCollect, stdout: "", exitCode: 124 };
  const late = result(await probe([ranOut, busyNodes, ...healthy], { tiers: ["pod-cross-node"] }), "pod-cross-node");
  assert.equal(late.verdict, "inconclusive");
  assert.match(late.reason!, /the capture vxlan-from-192\.168\.0\.21 on node2 ran out of time before its traffic was sent, twice/);
  const noStart: Recording = {
    where: "node2",
    command: /^mkdir -p \/run\/k8slab-probe .*\nsetsid sh -c 'timeout \d+ tcpdump .*udp dst port 8472/,
    stderr: "tcpdump: eth0: You don't have permission to capture on that device\n",
    exitCode: 1,
  };
  const r = result(await probe([noStart, busyNodes, ...healthy], { tiers: ["pod-cross-node"] }), "pod-cross-node");
  assert.equal(r.verdict, "inconclusive");
  assert.match(r.reason!, /the capture vxlan-from-192\.168\.0\.21 on node2 did not start: tcpdump: eth0: You don't have permission/);
  assert.ok(!r.evidence.some((e) => /^ping /m.test(e.command)), "nothing is sent while no capture listens");
});

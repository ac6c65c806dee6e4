// The report renderers: the terminal table with hop-by-hop explanations, JSON, and JUnit XML for CI.

import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { loadLab } from "../scripts/lab-file.ts";
import { renderJson, renderJunit, renderTerminal } from "../scripts/probes/render.ts";
import { runProbes } from "../scripts/probes/runner.ts";
import type { ProbeReport } from "../scripts/probes/types.ts";
import { type Recording, replay } from "./fixtures/probes/replay.ts";
import { faults, healthy, withFault } from "./fixtures/probes/scenarios.ts";

const loaded = loadLab(path.join(import.meta.dirname, "../labs/two-node.yaml"));
assert.ok(loaded.ok);
const lab = loaded.lab;
const healthyReport = () => runProbes(lab, replay(healthy));
const brokenReport = () => runProbes(lab, replay(withFault(faults.flanneldStoppedOnNode2)));

test("terminal: a table of verdicts, then each path hop by hop with live values", async () => {
  const out = renderTerminal(await healthyReport());
  assert.match(out, /^k8slab probe: lab two-node: 9 passed \(/);
  assert.match(out, /│ pod-cross-node +│ pass +│/);
  // The cross-node path in the order a packet goes.
  const order = [
    "pod eth0 (node1)",
    "veth (node1)",
    "cni0 (node1)",
    "flannel.1 (node1)",
    "FDB entry (node1)",
    "eth0 as UDP 8472",
    "flannel.1 (node2)",
    "cni0 (node2)",
    "pod eth0 (node2)",
  ];
  const at = order.map((h) => out.indexOf(`✓ ${h}`));
  assert.ok(
    at.every((i, n) => i > 0 && (n === 0 || i > at[n - 1])),
    `hops out of order: ${at}`,
  );
  // The service path, KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP -> DNAT.
  assert.match(out, /✓ KUBE-SERVICES \(node1\) +-d 10\.254\.83\.121\/32 tcp dpt:80 -> KUBE-SVC-7QXJX3NLLCHBKGHZ/);
  assert.match(out, /✓ KUBE-SEP-J5WBN7QCEOZ3LT6P +DNAT to 172\.30\.2\.3:80/);
  assert.doesNotMatch(out, /evidence:/, "passing tiers do not print their evidence");
  assert.doesNotMatch(out, /\x1b\[/, "no colour unless asked");
});

test("terminal: a failure names the first broken hop, the likely fix and shows the evidence; blocked tiers say by what", async () => {
  const out = renderTerminal(await brokenReport());
  assert.match(out, /flannel +│ FAIL +│ .* node2 FDB entry for node1's VTEP: missing/);
  assert.match(out, /│ service +│ blocked +│ +│ blocked by flannel/);
  assert.match(out, /  ✗ node2 FDB entry for node1's VTEP  missing: 6e:2b:7f:0c:11:a1 should go to dst 192\.168\.0\.21/);
  assert.match(out, /  first broken hop: node2 FDB entry for node1's VTEP/);
  assert.match(out, /  likely fix: flanneld on node2 /);
  assert.match(out, /    \$ \[node2\] bridge -j fdb show dev flannel\.1   \(exit 0, 1 ms\)\n        \[\]/);
  assert.match(out, /not judged, because a tier below them failed or is inconclusive: pod-same-node \(blocked by flannel\)/);
  assert.match(renderTerminal(await brokenReport(), { color: true }), /\x1b\[31mFAIL\x1b\[0m/);
});

test("JSON: the report as data, evidence included", async () => {
  const report = await brokenReport();
  const back = JSON.parse(renderJson(report)) as ProbeReport;
  assert.deepEqual(back, JSON.parse(JSON.stringify(report)));
  const flannel = back.results.find((r) => r.tier === "flannel")!;
  assert.deepEqual(Object.keys(flannel).sort(), ["durationMs", "evidence", "firstBrokenHop", "hops", "likelyFix", "tier", "title", "verdict"]);
  assert.deepEqual(Object.keys(flannel.evidence[0]).sort(), ["command", "exitCode", "ms", "stderr", "stdout", "where"]);
  assert.deepEqual(Object.keys(back.results.find((r) => r.tier === "dns")!).sort(), [
    "blockedBy",
    "durationMs",
    "evidence",
    "hops",
    "tier",
    "title",
    "verdict",
  ]);
});

test("JUnit: one testcase per tier; failure for a failed tier, skipped for a blocked one; text escaped", async () => {
  const report = await brokenReport();
  report.results[0].evidence.push({ where: "node1", command: `echo "<&>"`, exitCode: 0, stdout: "a < b & c > d\x1b[0m\n", stderr: "", ms: 1 });
  const xml = renderJunit(report);
  assert.match(xml, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites name="k8slab probe" tests="9" failures="1" errors="0" skipped="7" /);
  assert.equal((xml.match(/<testcase /g) ?? []).length, 9);
  assert.equal((xml.match(/<\/testcase>/g) ?? []).length, 9);
  assert.match(
    xml,
    /<testcase classname="k8slab\.probe\.two-node" name="flannel: [^"]*" time="[\d.]+">\n      <failure message="node2 FDB entry for node1's VTEP: missing: [^"]*" type="broken-hop">/,
  );
  assert.match(xml, /<testcase [^>]*name="service: [^"]*" time="0\.000">\n      <skipped message="blocked by flannel"\/>/);
  assert.match(xml, /echo &quot;&lt;&amp;&gt;&quot;/);
  assert.match(xml, /a &lt; b &amp; c &gt; d\uFFFD\[0m/, "control characters are not allowed in XML 1.0");
  assert.doesNotMatch(xml.replace(/<\/?[a-z?][^<>]*>/g, ""), /[<>]/, "no raw angle brackets outside tags");
});

/** The DNS tier's digs never answer in time (twice), on nodes that say how busy they are. */
const overloaded: Recording[] = [
  {
    where: /^node[12]$/,
    command: /^read -r some <\/proc\/pressure\/cpu/,
    stdout: "some avg10=97.00 avg60=95.10 avg300=90.00 total=1\nloadavg 18.00 17.00 16.00 9/300 1\n",
  },
  { where: "toolbox-7xk2p", command: /^dig /, overran: true },
  ...healthy,
];

test("terminal and JUnit: an inconclusive tier is no finding: it says what overran and how busy the nodes were, and is an error, not a failure", async () => {
  const report = await runProbes(lab, replay(overloaded));
  const out = renderTerminal(report);
  assert.match(out, /^k8slab probe: lab two-node: 7 passed, 1 inconclusive, 1 blocked \(/);
  assert.match(out, /│ dns +│ INCONCL +│/);
  assert.match(
    out,
    /dns \[INCONCL\]: .*\n  no finding: `dig .*` on pod k8slab-probe\/toolbox-7xk2p overran its deadline \(15\.0 s\), twice .*node1: CPU pressure 97% \(10 s\) 95\.1% \(60 s\), load 18 17 16/,
  );
  assert.match(out, /business-flow \(blocked by dns\)/);
  assert.doesNotMatch(out, /first broken hop:/);
  const xml = renderJunit(report);
  assert.match(xml, /tests="9" failures="0" errors="1" skipped="1" /);
  assert.match(xml, /name="dns: [^"]*" time="[\d.]+">\n      <error message="inconclusive: `dig [^"]*overran its deadline[^"]*" type="inconclusive"\/>/);
});

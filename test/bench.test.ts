// k8slab bench's figures from its tools' outputs: iperf3's JSON, curl's per-request times, the table.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseIperf, parseTimes, percentile, renderBench } from "../scripts/bench/bench.ts";

test("iperf3 -J: the receiver's rate in Mbit/s; curl's times in ms, failures left out; percentiles", () => {
  assert.equal(parseIperf(JSON.stringify({ end: { sum_received: { bits_per_second: 358_780_000 } } })), 358.78);
  assert.equal(parseIperf("iperf3: error - unable to connect"), undefined);
  assert.deepEqual(parseTimes("0.048400\n0.000000\n0.064750\nnot a time\n"), [48.4, 64.75]);
  const v = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.deepEqual([percentile(v, 50), percentile(v, 99)], [50, 99]);
});

test("the table: each path's figure and its ratio to same-node", () => {
  const text = renderBench({
    lab: "two-node",
    backend: "vxlan",
    kubeProxyMode: "iptables",
    runs: 2,
    seconds: 60,
    startedAt: "",
    rows: [
      { path: "pod -> pod, same node", mbps: [3000, 2800], note: "" },
      { path: "pod -> pod, cross-node", mbps: [360, 340], note: "" },
      { path: "HTTP, same node", ms: [40, 50, 60], note: "" },
      { path: "HTTP, cross-node", ms: [60, 75, 90], note: "" },
    ],
  });
  assert.match(text, /^\| pod -> pod, cross-node \| 340 \| 0\.12 \| 360, 340 \|$/m);
  assert.match(text, /^\| HTTP, cross-node \| 75 \| 90 \| 1\.50 \| 3 \|$/m);
});

// The end-to-end tests' own checks (test/e2e/checks.ts) on recorded and made-up inputs: each passes
// what a right lab gives and fails what a wrong one would, so none of them can pass without looking.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { loadLab } from "../scripts/lab-file.ts";
import { TIER_IDS, type TierId } from "../scripts/probes/contract.ts";
import { runProbes } from "../scripts/probes/runner.ts";
import type { ProbeReport } from "../scripts/probes/types.ts";
import {
  cgroupDirsOf,
  cgroupMounts,
  faultVerdictProblems,
  findContainerCgroups,
  healthyRuns,
  memoryProblems,
  notWithin,
  parseNodeMemory,
  tiersStandingOn,
} from "./e2e/checks.ts";
import { replay } from "./fixtures/probes/replay.ts";
import { faults, healthy, withFault } from "./fixtures/probes/scenarios.ts";

const loaded = loadLab(path.join(import.meta.dirname, "../labs/two-node.yaml"));
const lab = loaded.ok ? loaded.lab : assert.fail();

test("the tiers a fault blocks follow the tier graph, through tiers that stand on others", () => {
  assert.deepEqual(tiersStandingOn("underlay"), TIER_IDS.slice(1));
  assert.deepEqual(tiersStandingOn("flannel"), TIER_IDS.slice(2));
  assert.deepEqual(tiersStandingOn("pod-same-node"), ["service", "dns", "nodeport", "ingress", "business-flow"]);
  assert.deepEqual(tiersStandingOn("service"), ["dns", "nodeport", "ingress", "business-flow"]);
  assert.deepEqual(tiersStandingOn("dns"), ["business-flow"], "ingress only notes dns (a soft dependency)");
  assert.deepEqual(tiersStandingOn("ingress"), ["business-flow"]);
  assert.deepEqual(tiersStandingOn("business-flow"), []);
});

/** The lab e2e's four faults, as recorded, with the tier each is caught at. */
const LAB_FAULTS: [string, TierId, Parameters<typeof withFault>[0]][] = [
  ["flanneld stopped on node2, its FDB entries removed", "flannel", faults.flanneldStoppedOnNode2],
  ["kube-proxy's nat rules flushed on node1", "service", faults.natFlushedOnNode1],
  ["CoreDNS scaled to 0", "dns", faults.corednsScaledToZero],
  ["the ingress controller gone", "ingress", faults.ingressStopped],
];

for (const [fault, tier, recordings] of LAB_FAULTS) {
  test(`a recorded run with ${fault}: ${tier} fails, the tiers on it are blocked by it, the others pass`, async () => {
    const report = await runProbes(lab, replay(withFault(recordings)));
    assert.deepEqual(faultVerdictProblems(report, tier), []);
  });
}

/** A copy of a report with one tier's result changed. */
const withResult = (report: ProbeReport, tier: TierId, change: Partial<ProbeReport["results"][number]>): ProbeReport => ({
  ...report,
  results: report.results.map((r) => (r.tier === tier ? { ...r, ...change } : r)),
});

test("a run where a tier above the fault passes, or is blocked by another tier, or a tier beside it fails, is caught", async () => {
  const report = await runProbes(lab, replay(withFault(faults.natFlushedOnNode1)));
  const { blockedBy: _, ...dnsBlocked } = report.results.find((r) => r.tier === "dns")!;
  const dnsPasses = { ...report, results: report.results.map((r) => (r.tier === "dns" ? { ...dnsBlocked, verdict: "pass" as const } : r)) };
  // What lab.e2e.ts checked before: only the results that carry blockedBy, which the runner sets only on blocked ones.
  assert.ok(
    dnsPasses.results.filter((r) => r.blockedBy).every((r) => r.verdict === "blocked"),
    "the old check passes this run",
  );
  assert.deepEqual(faultVerdictProblems(dnsPasses, "service"), ["dns: pass, not blocked by service (it stands on service)"]);
  assert.deepEqual(faultVerdictProblems(withResult(report, "nodeport", { blockedBy: "pod-same-node" }), "service"), [
    "nodeport: blocked by pod-same-node, not blocked by service (it stands on service)",
  ]);
  assert.deepEqual(faultVerdictProblems(withResult(report, "pod-same-node", { verdict: "fail", firstBrokenHop: "node1: cni0: down" }), "service"), [
    "pod-same-node: fail: node1: cni0: down, not pass (it does not stand on service)",
  ]);
  assert.deepEqual(faultVerdictProblems(withResult(report, "service", { verdict: "inconclusive", firstBrokenHop: undefined, reason: "overran" }), "service"), [
    "service: inconclusive: overran, not fail",
  ]);
  assert.deepEqual(faultVerdictProblems(await runProbes(lab, replay(healthy)), "service"), [
    "service: pass, not fail",
    "dns: pass, not blocked by service (it stands on service)",
    "nodeport: pass, not blocked by service (it stands on service)",
    "ingress: pass, not blocked by service (it stands on service)",
    "business-flow: pass, not blocked by service (it stands on service)",
  ]);
});

test("K8SLAB_E2E_HEALTHY_RUNS: at least one run, or a clear error", () => {
  assert.equal(healthyRuns(undefined), 3);
  assert.equal(healthyRuns(""), 3);
  assert.equal(healthyRuns("1"), 1);
  assert.equal(healthyRuns("5"), 5);
  for (const bad of ["0", "00", "-1", "2.5", "three", "1e3"])
    assert.throws(() => healthyRuns(bad), /K8SLAB_E2E_HEALTHY_RUNS=.*at least 1 \(0 would check nothing\)/, bad);
});

const MOUNTINFO = (dir: string) =>
  [
    `31 23 0:28 / ${dir} rw,relatime - tmpfs tmpfs rw,mode=755`,
    `32 31 0:29 / ${dir}/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct`,
    `35 31 0:31 / ${dir}/memory rw,relatime - cgroup cgroup rw,memory`,
    `40 31 0:36 / ${dir}/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd`,
    `41 31 0:37 / ${dir}/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate`,
    "50 23 0:40 / /proc rw - proc proc rw",
  ].join("\n");

test("cgroup mounts: each v1 hierarchy with its controllers, and the v2 tree", () => {
  assert.deepEqual(
    cgroupMounts(MOUNTINFO("/sys/fs/cgroup")).map((m) => `${m.version} ${m.mountPoint} ${m.controllers.join(",")}`),
    ["1 /sys/fs/cgroup/cpu,cpuacct cpu,cpuacct", "1 /sys/fs/cgroup/memory memory", "1 /sys/fs/cgroup/systemd name=systemd", "2 /sys/fs/cgroup/unified "],
  );
});

test("a container's cgroups are found in v1 and v2 trees at any depth; a check that cannot look throws", (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-cgroups-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ct = "k8slab-ct-two-node-node1";
  const made = [
    `memory/lxc.payload.${ct}`, // v1, at the root, as LXC puts it when it escapes to the root cgroup
    `memory/process_api/abc/lxc.monitor.${ct}`, // nested under the cgroup LXC started in
    `cpu,cpuacct/lxc.payload.${ct}`,
    `unified/lxc.payload.${ct}`, // v2 (a hybrid host's unified tree; on a v2-only host the mount point itself)
  ];
  for (const d of [...made, `memory/lxc.payload.${ct}/init.scope`, `memory/lxc.payload.${ct}-other`, "systemd/system.slice", "unified/user.slice"])
    fs.mkdirSync(path.join(dir, d), { recursive: true });
  const mountinfo = MOUNTINFO(dir);
  assert.deepEqual(findContainerCgroups(ct, mountinfo), made.map((d) => path.join(dir, d)).sort());
  assert.deepEqual(findContainerCgroups("k8slab-ct-two-node-node2", mountinfo), []);
  // A v2-only host: the payload right under the mount point.
  fs.mkdirSync(path.join(dir, "v2only", `lxc.payload.${ct}`), { recursive: true });
  assert.deepEqual(findContainerCgroups(ct, `60 1 0:50 / ${dir}/v2only rw - cgroup2 cgroup2 rw`), [path.join(dir, "v2only", `lxc.payload.${ct}`)]);

  assert.throws(() => findContainerCgroups(ct, "50 23 0:40 / /proc rw - proc proc rw"), /no cgroup filesystem is mounted/);
  assert.throws(() => findContainerCgroups(ct, `61 1 0:51 / ${dir}/gone rw - cgroup2 cgroup2 rw`), /cannot read the cgroup tree at .*gone: ENOENT/);

  // The running node's own cgroups (its init's /proc/<pid>/cgroup) lie within what was found.
  const mounts = cgroupMounts(mountinfo);
  const init = [
    "3:memory:/lxc.payload.k8slab-ct-two-node-node1/init.scope",
    "2:cpu,cpuacct:/lxc.payload.k8slab-ct-two-node-node1",
    "0::/lxc.payload.k8slab-ct-two-node-node1",
  ];
  const dirs = cgroupDirsOf(`${init.join("\n")}\n`, mounts);
  assert.deepEqual(dirs, [`${dir}/memory/lxc.payload.${ct}/init.scope`, `${dir}/cpu,cpuacct/lxc.payload.${ct}`, `${dir}/unified/lxc.payload.${ct}`]);
  assert.deepEqual(notWithin(dirs, findContainerCgroups(ct, mountinfo)), []);
  assert.deepEqual(notWithin(dirs, [`${dir}/memory/lxc.payload.${ct}`]), [`${dir}/cpu,cpuacct/lxc.payload.${ct}`, `${dir}/unified/lxc.payload.${ct}`]);
});

test("a node's memory: v1 and v2 figures read, and only a figure above 0 and below the lab's limit is plausible", () => {
  const v1 = parseNodeMemory("cache 1048576\nrss 2097152\ntotal_cache 157286400\ntotal_rss 524288000\n", "3221225472\n");
  assert.deepEqual(v1, { rssMiB: 500, cacheMiB: 150, limitMiB: 3072 });
  assert.deepEqual(parseNodeMemory("anon 314572800\nfile 104857600\n", "2147483648\n"), { rssMiB: 300, cacheMiB: 100, limitMiB: 2048 });
  assert.equal(parseNodeMemory("anon 1\n", "max\n").limitMiB, Number.POSITIVE_INFINITY);
  assert.deepEqual(memoryProblems("node1", v1, 3072), []);

  assert.deepEqual(memoryProblems("node1", undefined, 3072), ["node1: no memory cgroup with a memory.stat was found"]);
  assert.deepEqual(memoryProblems("node1", parseNodeMemory("total_swap 0\n", "3221225472\n"), 3072), [
    "node1: resident memory NaN MiB, not a figure above 0",
    "node1: page cache NaN MiB, not a figure",
  ]);
  assert.deepEqual(memoryProblems("node1", { ...v1, rssMiB: 0 }, 3072), ["node1: resident memory 0 MiB, not a figure above 0"]);
  assert.deepEqual(memoryProblems("node1", { ...v1, rssMiB: 3100, limitMiB: 4096 }, 3072), [
    "node1: resident memory 3100.0 MiB, not below its limit of 3072 MiB",
    "node1: the cgroup's limit is 4096 MiB, the lab file's 3072 MiB",
  ]);
});

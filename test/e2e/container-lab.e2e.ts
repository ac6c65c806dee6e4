// End-to-end test of the reference lab on container nodes (root, LXC): `k8slab up` from nothing to every
// probe tier passing, a second `up` that changes nothing, each node's memory, then `down` leaving no
// namespace, container, cgroup, mount or state. In CI (`npm run test:e2e`): the fast lab.
import "../../scripts/quiet-bash.ts";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { containerOf } from "../../core/names.ts";
import { labPaths } from "../../core/paths.ts";
import { loadLab } from "../../scripts/lab-file.ts";
import { labStatus } from "../../scripts/machines/lab.ts";
import { netnsExists } from "../../scripts/machines/labnet.ts";
import { lxcCgroups } from "../../scripts/machines/lxc.ts";
import type { ProbeReport } from "../../scripts/probes/types.ts";
import { repoRoot } from "../../scripts/toolchain/paths.ts";
import { assertExited0, k8slab, secsSince } from "./reference-lab.ts";

const LAB_FILE = "labs/container-two-node.yaml";
const loaded = loadLab(path.join(repoRoot, LAB_FILE));
assert.ok(loaded.ok);
const lab = loaded.lab;
const figures: Record<string, number | string> = {};

/** A cgroup v1 memory figure of the node's container on the host, in MiB. */
const memoryMiB = (node: string, stat: string) => {
  const dir = `/sys/fs/cgroup/memory/lxc.payload.${containerOf(lab.name, node)}`;
  const text = fs.readFileSync(path.join(dir, "memory.stat"), "utf8");
  return Math.round(Number(new RegExp(`^${stat} (\\d+)$`, "m").exec(text)?.[1]) / 1048576);
};

describe("the reference lab on container nodes", { skip: process.getuid?.() === 0 ? false : "needs root (namespaces, LXC)" }, () => {
  before(async () => {
    // A previous, interrupted run must not make this one fail.
    await k8slab("down", LAB_FILE);
  });

  after(async () => {
    if (process.env.K8SLAB_E2E_KEEP === "1") return;
    const from = Date.now();
    const down = await k8slab("down", LAB_FILE);
    figures["down s"] = secsSince(from);
    process.stderr.write(`container lab e2e figures: ${JSON.stringify(figures)}\n`);
    assertExited0(down, "down", down.stderr);
    assert.equal(netnsExists(lab.netns), false, "the lab namespace is gone");
    assert.equal(fs.existsSync(labPaths(lab.name).dir), false, "the lab's state (layers, containerd stores, keys) is gone");
    for (const n of lab.nodes) assert.deepEqual(lxcCgroups(containerOf(lab.name, n.name)), [], `no cgroup of ${n.name} is left`);
    const mounts = fs
      .readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .filter((l) => l.includes(labPaths(lab.name).dir));
    assert.deepEqual(mounts, [], "no mount of the lab is left on the host");
  });

  it("up stands the lab up from nothing, every tier passing", { timeout: 20 * 60_000 }, async () => {
    const from = Date.now();
    const up = await k8slab("up", LAB_FILE);
    figures["up s"] = secsSince(from);
    assertExited0(up, "up", `${up.stderr}\n${up.stdout}`);
    assert.match(up.stderr, /✓ probes: every network tier/);
  });

  it("the probes pass on every tier with their evidence", { timeout: 5 * 60_000 }, async () => {
    const from = Date.now();
    const probe = await k8slab("probe", LAB_FILE, "--json");
    figures["probe s"] = secsSince(from);
    const report = JSON.parse(probe.stdout) as ProbeReport;
    assert.deepEqual(
      report.results.filter((r) => r.verdict !== "pass").map((r) => `${r.tier} ${r.verdict}: ${r.firstBrokenHop}`),
      [],
    );
    for (const r of report.results) assert.ok(r.hops.length > 0, `${r.tier} shows its hops`);
    assert.equal(probe.exitCode, 0);
  });

  it("each node's memory on the host (resident and page cache) is recorded", async () => {
    const status = await labStatus(lab.name);
    for (const n of lab.nodes) {
      assert.ok(status.nodes.find((s) => s.name === n.name)?.running, `${n.name} runs`);
      figures[`${n.name} rss MiB`] = memoryMiB(n.name, "total_rss");
      figures[`${n.name} cache MiB`] = memoryMiB(n.name, "total_cache");
    }
  });

  it("a second up changes nothing", { timeout: 10 * 60_000 }, async () => {
    const from = Date.now();
    const again = await k8slab("up", LAB_FILE);
    figures["second up s"] = secsSince(from);
    assertExited0(again, "second up", again.stderr);
    assert.match(again.stderr, new RegExp(`lab ${lab.name}: \\{"same":\\d+\\}`));
    assert.match(again.stderr, /✓ probes: every network tier, bottom-up \(run while Pulumi found nothing to change\)/, "the probes overlapped Pulumi");
  });
});

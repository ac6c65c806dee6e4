// End-to-end test of the reference lab on container nodes (root, LXC): `k8slab up` from nothing to every
// probe tier passing, the probe run's HTML page checked in headless Chromium, a second `up` that changes
// nothing, each node's memory, then `down` leaving no namespace, container, cgroup, mount or state. In CI
// (`npm run test:e2e`): the fast lab.
import "../../scripts/quiet-bash.ts";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { $ } from "zx";
import { CLUSTER_DNS, containerOf, TOOLBOX, WORKLOAD_NAMESPACE } from "../../core/names.ts";
import { labPaths } from "../../core/paths.ts";
import { labStatus } from "../../scripts/machines/lab.ts";
import { netnsExists } from "../../scripts/machines/labnet.ts";
import type { SshEndpoint } from "../../scripts/machines/spec.ts";
import { sshRun } from "../../scripts/machines/ssh.ts";
import type { ProbeReport } from "../../scripts/probes/types.ts";
import { bundleBinDir } from "../../scripts/toolchain/paths.ts";
import { chromiumBinary, chromiumDom, type PageValues, pageProblems } from "../report-page.ts";
import { cgroupDirsOf, cgroupMounts, findContainerCgroups, memoryProblems, notWithin, readNodeMemory } from "./checks.ts";
import { ownLab } from "./own-lab.ts";
import { assertExited0, k8slab, ownRunsAndLabs, secsSince } from "./reference-lab.ts";

/** labs/container-two-node.yaml as the tests' own lab (e2e-ct-two-node, own-lab.ts): a developer's ct-two-node is never touched. */
const { file: LAB_FILE, lab } = ownLab("labs/container-two-node.yaml");
const figures: Record<string, number | string> = {};

/** Each node's LXC cgroups as found while the lab ran (the search shown to find them), for the check after down. */
const cgroupsWhileUp = new Map<string, string[]>();

/** What the lab's page must draw, read here beside `probe --html` (kubectl, and each node's own device), not by the page's reader. */
async function liveValues(): Promise<PageValues> {
  const status = JSON.parse((await k8slab("status", LAB_FILE, "--json")).stdout) as { kubeconfig: string; nodes: { name: string; ssh: SshEndpoint }[] };
  const get = async (kind: string) =>
    JSON.parse((await $({ quiet: true })`${bundleBinDir()}/kubectl --kubeconfig ${status.kubeconfig} get ${kind} -A -o json`).stdout).items;
  const drawn = [WORKLOAD_NAMESPACE, TOOLBOX.namespace, CLUSTER_DNS.namespace];
  const device = lab.pods.flannel.device;
  return {
    nodes: lab.nodes.map((n) => n.name),
    pods: (await get("pods")).filter((p: any) => !p.spec.hostNetwork && p.status.podIP).map((p: any) => ({ name: p.metadata.name, ip: p.status.podIP })),
    services: (await get("services"))
      .filter((s: any) => drawn.includes(s.metadata.namespace) && s.spec.clusterIP && s.spec.clusterIP !== "None")
      .map((s: any) => ({ namespace: s.metadata.namespace, name: s.metadata.name, clusterIP: s.spec.clusterIP })),
    vtepMacs: device
      ? Object.fromEntries(await Promise.all(status.nodes.map(async (n) => [n.name, (await sshRun(n.ssh, `cat /sys/class/net/${device}/address`)).trim()])))
      : {},
  };
}

describe("the reference lab on container nodes", { skip: process.getuid?.() === 0 ? false : "needs root (namespaces, LXC)" }, () => {
  // Each test's k8slab runs end with it (a timeout included); if this process is stopped, the lab goes down too.
  ownRunsAndLabs([LAB_FILE]);
  before(async () => {
    // A previous, interrupted run must not make this one fail (its own lab only).
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
    // A search of every cgroup tree, v1 and v2; it throws when it cannot look (findContainerCgroups).
    for (const n of lab.nodes) assert.deepEqual(findContainerCgroups(containerOf(lab.name, n.name)), [], `no cgroup of ${n.name} is left`);
    if (cgroupsWhileUp.size)
      for (const dirs of cgroupsWhileUp.values())
        assert.deepEqual(
          dirs.filter((d) => fs.existsSync(d)),
          [],
          "a cgroup found while the lab ran is left",
        );
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

  it("probe --html writes the live lab's page, and headless Chromium shows its nodes, tiers, hops, pods, Services and VTEP MACs", {
    timeout: 5 * 60_000,
  }, async (t) => {
    // Not skipped without Chromium: .ci/run installs it, and a check that does not run proves nothing.
    const chromium = chromiumBinary();
    assert.ok(chromium, "Chromium checks the page: apt-get install chromium (.ci/run installs it)");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-e2e-html-"));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, "probe.html");
    const from = Date.now();
    const probe = await k8slab("probe", LAB_FILE, "--json", "--html", file);
    figures["probe --html s"] = secsSince(from);
    assertExited0(probe, "probe --html", `${probe.stderr}\n${probe.stdout}`);
    const report = JSON.parse(probe.stdout) as ProbeReport;
    const values = await liveValues();
    assert.ok(values.pods.length > 0 && values.services.length > 0, "the lab has pods and Services to draw");
    const page = chromiumDom(chromium, file, dir);
    assert.equal(page.status, 0, page.log.slice(-2000));
    assert.deepEqual(pageProblems(page.dom, report, values), []);
    assert.doesNotMatch(page.log, /CONSOLE|Uncaught/, "the page's script logs nothing and throws nothing");
  });

  it("each node's memory on the host (resident and page cache) is recorded, above 0 and below its limit, from cgroups found where they are", async () => {
    const status = await labStatus(lab.name);
    const mounts = cgroupMounts(fs.readFileSync("/proc/self/mountinfo", "utf8"));
    for (const n of lab.nodes) {
      const s = status.nodes.find((x) => x.name === n.name) as { running?: boolean; pid?: number } | undefined;
      assert.ok(s?.running && s.pid, `${n.name} runs`);
      const found = findContainerCgroups(containerOf(lab.name, n.name));
      cgroupsWhileUp.set(n.name, found);
      // The node's init is in cgroups the search finds: the same search after down can see them gone.
      const own = cgroupDirsOf(fs.readFileSync(`/proc/${s.pid}/cgroup`, "utf8"), mounts).filter((d) => !mounts.some((m) => m.mountPoint === d));
      assert.ok(own.length > 0, `${n.name}'s init is in cgroups of its own`);
      assert.deepEqual(notWithin(own, found), [], `${n.name}'s init's cgroups are among those found: ${found.join(", ")}`);
      const memory = readNodeMemory(found);
      figures[`${n.name} rss MiB`] = memory ? Math.round(memory.rssMiB) : "none";
      figures[`${n.name} cache MiB`] = memory ? Math.round(memory.cacheMiB) : "none";
      assert.deepEqual(memoryProblems(n.name, memory, n.memoryMiB), []);
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

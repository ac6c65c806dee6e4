// End-to-end test of `k8slab snapshot` and `diff` on the reference lab (root, real VMs): a snapshot,
// `down` and `up` again, and the new snapshot equals the first; then four changes made by hand (an
// MTU, an FDB entry, a kube-proxy rule, a Corefile line), each named by the diff at its tier, and
// undone. On the tests' own reference lab (e2e-two-node). Not in CI (two `up`s): `npm run test:e2e:snapshot`
// (K8SLAB_E2E_KEEP=1 keeps the lab).
import "../../scripts/quiet-bash.ts";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { $ } from "zx";
import { labPaths } from "../../core/paths.ts";
import { waitFor as waitShell } from "../../infra/tiers/remote.ts";
import { labStatus } from "../../scripts/machines/lab.ts";
import type { SshEndpoint } from "../../scripts/machines/spec.ts";
import { sshRun } from "../../scripts/machines/ssh.ts";
import type { Change } from "../../scripts/snapshot/diff.ts";
import { bundleBinDir } from "../../scripts/toolchain/paths.ts";
import { assertExited0, k8slab, LAB_FILE, lab, ownRunsAndLabs } from "./reference-lab.ts";

const [node1, node2] = lab.nodes;
const dev = lab.pods.flannel.device;
const secs = (from: number) => Math.round((Date.now() - from) / 100) / 10;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-snapshot-e2e-"));
const figures: Record<string, number | string> = {};

describe("snapshot and diff on the reference lab", { skip: process.getuid?.() === 0 ? false : "needs root (namespaces, taps, VMs)" }, () => {
  ownRunsAndLabs([LAB_FILE]);
  const onNode = async (n: string, command: string) => {
    const vm = (await labStatus(lab.name)).nodes.find((x) => x.name === n);
    assert.ok(vm?.ssh, `${n} has an ssh endpoint`);
    return sshRun(vm.ssh as SshEndpoint, command);
  };
  const kubectl = (...args: string[]) => $({ quiet: true })`${bundleBinDir()}/kubectl --kubeconfig ${labPaths(lab.name).adminKubeconfig} ${args}`;
  const snapshot = async (name: string) => {
    const from = Date.now();
    const file = path.join(dir, name);
    const r = await k8slab("snapshot", LAB_FILE, "-o", file);
    assert.equal(r.exitCode, 0, r.stderr);
    figures[`snapshot ${name} s`] = secs(from);
    figures[`snapshot ${name} KiB`] = Math.round(fs.statSync(file).size / 1024);
    return file;
  };
  const diff = async (baseline: string, current?: string) => {
    const from = Date.now();
    const r = await k8slab("diff", baseline, ...(current ? [current] : []), "--json");
    figures[`diff s`] = secs(from);
    assert.notEqual(r.exitCode, 2, r.stderr);
    return { exitCode: r.exitCode, changes: JSON.parse(r.stdout).changes as Change[] };
  };

  after(async () => {
    process.stderr.write(`snapshot e2e figures: ${JSON.stringify(figures)}\n`);
    fs.rmSync(dir, { recursive: true, force: true });
    if (process.env.K8SLAB_E2E_KEEP !== "1") assert.equal((await k8slab("down", LAB_FILE)).exitCode, 0);
  });

  let first: string;
  it("a lab rebuilt from the same file has the same snapshot", { timeout: 60 * 60_000 }, async () => {
    assert.equal((await k8slab("up", LAB_FILE)).exitCode, 0, "up");
    first = await snapshot("first.yaml");
    assert.equal((await k8slab("down", LAB_FILE)).exitCode, 0, "down");
    const up = await k8slab("up", LAB_FILE);
    assertExited0(up, "up", up.stderr);
    const second = await snapshot("second.yaml");
    const { exitCode, changes } = await diff(first, second);
    assert.deepEqual(changes, [], "a rebuild changes nothing");
    assert.equal(exitCode, 0);
  });

  it("four changes made by hand are each named at their tier, and undone the diff is empty again", { timeout: 20 * 60_000 }, async () => {
    const business = `${"default"}/${lab.workloads.businessManager.name}:http cluster IP`;
    const corefile = JSON.parse((await kubectl("-n", "kube-system", "get", "configmap", "coredns", "-o", "json")).stdout).data.Corefile as string;
    await onNode(node2.name, `ip link set ${dev} mtu 1400`);
    await onNode(
      node2.name,
      `bridge fdb show dev ${dev} | grep " dst ${node1.address} " | while read -r mac _; do bridge fdb del "$mac" dev ${dev} dst ${node1.address}; done`,
    );
    // kube-proxy stopped first, or it would write the rule back.
    await onNode(
      node1.name,
      `systemctl stop kube-proxy && iptables -t nat -S KUBE-SERVICES | grep -F '${business}' | sed 's/^-A/-D/' | while read -r rule; do eval iptables -t nat $rule; done`,
    );
    await kubectl(
      "-n",
      "kube-system",
      "patch",
      "configmap",
      "coredns",
      "--type=merge",
      "-p",
      JSON.stringify({ data: { Corefile: corefile.replace("cache 30", "cache 60") } }),
    );
    try {
      const { exitCode, changes } = await diff(first);
      assert.equal(exitCode, 1);
      const at = (tier: string, key: string) => changes.find((c) => c.tier === tier && c.key === key);
      assert.match(at("flannel", `${node2.name} device`)?.meaning ?? "none", /MTU is 1400 \(was 1450\)/);
      assert.match(at("flannel", `${node2.name} fdb`)?.meaning ?? "none", new RegExp(`no FDB entry for ${node1.name}'s VTEP`));
      assert.match(at("services", `${node1.name} nat`)?.meaning ?? "none", /KUBE-SERVICES .*business-manager/);
      assert.deepEqual(at("dns", "Corefile")?.added, ["    cache 60"]);
      assert.deepEqual(changes.map((c) => `${c.tier} ${c.key}`).sort(), [
        "dns Corefile",
        `flannel ${node2.name} device`,
        `flannel ${node2.name} fdb`,
        `services ${node1.name} nat`,
      ]);
    } finally {
      await kubectl("-n", "kube-system", "patch", "configmap", "coredns", "--type=merge", "-p", JSON.stringify({ data: { Corefile: corefile } }));
      await onNode(
        node1.name,
        `systemctl start kube-proxy && ${waitShell(`iptables -t nat -S KUBE-SERVICES | grep -qF '${business}'`, "kube-proxy rewrote its rule", 120)}`,
      );
      // flanneld programs the FDB from the leases when it starts.
      await onNode(
        node2.name,
        `ip link set ${dev} mtu ${lab.pods.mtu} && systemctl restart flanneld && ${waitShell(`bridge fdb show dev ${dev} | grep -q "dst ${node1.address} "`, "flanneld re-added the FDB entry", 120)}`,
      );
    }
    const restored = await diff(first);
    assert.deepEqual(restored.changes, [], "undone, nothing differs");
  });
});

// End-to-end test of the reference lab (root, real VMs, the real bundle): `k8slab up`, the cluster's
// promises checked from the outside, a second `up` that changes nothing, `k8slab probe` on the
// healthy lab and with each of four faults (caught at the right tier), three workshop scenarios broken
// and fixed, then `down` leaving nothing.
// The lab is the tests' own (labs/two-node.yaml as e2e-two-node, own-lab.ts): a developer's two-node is never touched.
// Run: npm run test:e2e:lab   (K8SLAB_E2E_KEEP=1 keeps the lab up afterwards; K8SLAB_E2E_REUSE=1 starts from the lab that is up)
import "../../scripts/quiet-bash.ts";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { $ } from "zx";
import { etcdctlCommand } from "../../core/node.ts";
import { labPaths } from "../../core/paths.ts";
import { waitFor as waitShell } from "../../infra/tiers/remote.ts";
import { labStatus } from "../../scripts/machines/lab.ts";
import { netnsExists } from "../../scripts/machines/labnet.ts";
import type { SshEndpoint } from "../../scripts/machines/spec.ts";
import { sshRun } from "../../scripts/machines/ssh.ts";
import type { TierId } from "../../scripts/probes/contract.ts";
import type { ProbeReport } from "../../scripts/probes/types.ts";
import { forLab, loadCatalog } from "../../scripts/scenarios/catalog.ts";
import { bundleBinDir, cacheRoot } from "../../scripts/toolchain/paths.ts";
import { faultVerdictProblems, healthyRuns } from "./checks.ts";
import { assertExited0, k8slab, LAB_FILE, lab, ownRunsAndLabs, SCENARIO_TABLE_HEAD, tryScenario } from "./reference-lab.ts";

const isRoot = process.getuid?.() === 0;

const figures: Record<string, number | string> = {};
/** The healthy lab is probed this many times, this far apart (CI: 3; K8SLAB_E2E_HEALTHY_RUNS=1 for a quick check; 0 is refused). */
const HEALTHY_RUNS = healthyRuns(process.env.K8SLAB_E2E_HEALTHY_RUNS);
const HEALTHY_GAP_SEC = 150;
const CI_SCENARIOS = ["forward-drop", "service-selector-mismatch", "coredns-down"];
const secs = (from: number) => Math.round((Date.now() - from) / 100) / 10;
/** The hop a catalog scenario names (its pattern for this lab): each fault below is one of theirs. */
const hopOf = (id: string) => {
  const s = loadCatalog(lab).scenarios.find((x) => x.id === id);
  assert.ok(s, `${id} is in the catalog`);
  return new RegExp(forLab(s, lab).verdict.hop);
};

interface Status {
  netns: string;
  nodes: { name: string; address: string; ssh: SshEndpoint }[];
  kubeconfig: string | null;
}

describe("the reference lab end to end", { skip: isRoot ? false : "needs root (namespaces, taps, VMs)" }, () => {
  let status: Status;
  const kubectl = (...args: string[]) => $({ quiet: true })`${bundleBinDir()}/kubectl --kubeconfig ${status.kubeconfig} ${args}`;
  const onNode = (name: string, command: string) => sshRun(status.nodes.find((n) => n.name === name)!.ssh, command);
  const outsideClient = (command: string) => $({ quiet: true, nothrow: true })`nsenter --net=/run/netns/${lab.netns} timeout 20 bash -c ${command}`;
  const toolboxOn = async (node: string) => {
    const pods = JSON.parse((await kubectl("-n", "k8slab-probe", "get", "pods", "-l", "app=toolbox", "-o", "json")).stdout).items;
    const pod = pods.find((p: any) => p.spec.nodeName === node);
    assert.ok(pod, `a toolbox pod on ${node}`);
    return { name: pod.metadata.name as string, ip: pod.status.podIP as string };
  };

  // Each test's k8slab runs end with it (a timeout included); if this process is stopped, the lab goes down too.
  ownRunsAndLabs([LAB_FILE]);
  before(async () => {
    // A previous, interrupted run must not make this one fail (its own lab only). K8SLAB_E2E_REUSE=1 starts
    // from the lab that is up (with K8SLAB_E2E_KEEP=1, a quick loop while working on the probes).
    if (process.env.K8SLAB_E2E_REUSE !== "1") await k8slab("down", LAB_FILE);
  });

  after(async () => {
    if (process.env.K8SLAB_E2E_KEEP === "1") return;
    // The VMs' console logs outlive the lab, for a run that failed (a guest kernel's last words).
    const logs = path.join(labPaths(lab.name).dir, "logs");
    if (fs.existsSync(logs)) fs.cpSync(logs, path.join(cacheRoot(), "logs", "lab-e2e-last"), { recursive: true });
    const from = Date.now();
    const down = await k8slab("down", LAB_FILE);
    figures.downSeconds = secs(from);
    process.stderr.write(`lab e2e figures: ${JSON.stringify(figures)}\n`);
    assert.equal(down.exitCode, 0, down.stderr);
    assert.equal(netnsExists(lab.netns), false, "the lab namespace is gone");
    assert.equal(fs.existsSync(labPaths(lab.name).dir), false, "lab state (overlays, keys, kubeconfig) is gone");
    assert.deepEqual(
      (await labStatus(lab.name)).nodes.filter((n) => n.running),
      [],
      "no VM of the lab is left running",
    );
  });

  it("up stands the lab up from the lab file", { timeout: 90 * 60_000 }, async () => {
    const from = Date.now();
    const up = await k8slab("up", LAB_FILE);
    figures.upSeconds = secs(from);
    const summary = up.stderr
      .split("\n")
      .filter((l) => /^[•✓✗]/.test(l))
      .join("\n");
    process.stderr.write(`${summary}\n`);
    // On failure: the end of the steps (stderr) and the probe report (stdout).
    assertExited0(up, "up", `${up.stderr}\n${up.stdout}`);
  });

  it("status --json gives the namespace, each node with its ssh endpoint, and the kubeconfig", async () => {
    const r = await k8slab("status", LAB_FILE, "--json");
    assert.equal(r.exitCode, 0, r.stderr);
    status = JSON.parse(r.stdout);
    assert.equal(status.netns, lab.netns);
    assert.deepEqual(
      status.nodes.map((n) => [n.name, n.address]),
      [
        ["node1", "192.168.0.21"],
        ["node2", "192.168.0.22"],
      ],
    );
    for (const n of status.nodes) assert.ok(n.ssh?.port && n.ssh.keyFile, `${n.name} has an ssh endpoint`);
    assert.ok(status.kubeconfig && fs.existsSync(status.kubeconfig), "the admin kubeconfig is a file");
  });

  it("both nodes are Ready", async () => {
    const nodes = JSON.parse((await kubectl("get", "nodes", "-o", "json")).stdout).items;
    const ready = nodes.map((n: any) => [n.metadata.name, n.status.conditions.find((c: any) => c.type === "Ready").status]);
    assert.deepEqual(ready.sort(), [
      ["node1", "True"],
      ["node2", "True"],
    ]);
  });

  it("each node holds its 172.30.X.0/24 lease, and flannel.1 has VNI 1 and port 8472", async () => {
    const leases = await onNode("node1", `${etcdctlCommand(lab)} get --prefix --keys-only /coreos.com/network/subnets`);
    for (const n of lab.nodes) {
      assert.match(leases, new RegExp(`/coreos.com/network/subnets/${n.podSubnet.replace("/", "-").replace(/\./g, "\\.")}`), n.name);
      const link = await onNode(n.name, "ip -d link show flannel.1");
      assert.match(link, /vxlan id 1 /, `${n.name} VNI`);
      assert.match(link, /dstport 8472 /, `${n.name} port`);
      assert.match(link, /mtu 1450 /, `${n.name} MTU`);
    }
  });

  it("a pod on node1 reaches a pod on node2 by IP", async () => {
    const [a, b] = [await toolboxOn("node1"), await toolboxOn("node2")];
    assert.ok(a.ip.startsWith("172.30.1.") && b.ip.startsWith("172.30.2."), `pod IPs ${a.ip} ${b.ip} come from each node's lease`);
    const ping = await kubectl("-n", "k8slab-probe", "exec", a.name, "--", "ping", "-c", "3", "-W", "3", b.ip);
    assert.match(ping.stdout, / 0% packet loss/);
  });

  it("/healthz answers with the admin credentials, and an anonymous request for secrets is refused", async () => {
    assert.equal((await kubectl("get", "--raw", "/healthz")).stdout.trim(), "ok");
    const anonymous = await onNode("node1", 'curl -s -o /dev/null -w "%{http_code}" --cacert /etc/kubernetes/pki/ca.crt https://127.0.0.1:6443/api/v1/secrets');
    assert.equal(anonymous.trim(), "401");
    const health = await onNode("node1", "curl -s --cacert /etc/kubernetes/pki/ca.crt https://127.0.0.1:6443/healthz");
    assert.equal(health.trim(), "ok", "health endpoints stay open to anonymous requests");
  });

  it("the outside client reaches business-manager through the ingress, and it names both hops", async () => {
    const r = await outsideClient(`curl -s --max-time 15 -H 'Host: ${lab.ingress.host}' http://${lab.controlPlane.address}/`);
    assert.equal(r.exitCode, 0, r.stderr);
    const body = JSON.parse(r.stdout);
    assert.match(body.businessManager.pod, /^business-manager-/);
    assert.match(body.dataProduct.pod, /^data-product-/);
  });

  it("a pod resolves data-product.default.svc.cluster.local through 10.254.0.2 to the Service IP", async () => {
    const a = await toolboxOn("node1");
    const serviceIP = (await kubectl("get", "service", "data-product", "-o", "jsonpath={.spec.clusterIP}")).stdout.trim();
    const dig = await kubectl("-n", "k8slab-probe", "exec", a.name, "--", "dig", "+short", "+time=3", "@10.254.0.2", "data-product.default.svc.cluster.local");
    assert.equal(dig.stdout.trim(), serviceIP);
    const resolv = await kubectl("-n", "k8slab-probe", "exec", a.name, "--", "cat", "/etc/resolv.conf");
    assert.match(resolv.stdout, /^nameserver 10\.254\.0\.2$/m, "kubelet points pods at the cluster DNS");
  });

  it("a second up changes nothing", { timeout: 30 * 60_000 }, async () => {
    const from = Date.now();
    const again = await k8slab("up", LAB_FILE);
    figures.secondUpSeconds = secs(from);
    // Where its seconds went: the stack's selection, Pulumi, the probes (their step lines) and each tier.
    for (const [, step, s] of again.stderr.matchAll(/^✓ (stack|pulumi up|probes)[^\n]*\((\d+\.\d) s\)$/gm)) figures[`secondUp.${step}`] = Number(s);
    for (const [, tier, s] of again.stderr.matchAll(/^ {2}([a-z-]+): \w+ (\d+\.\d) s$/gm)) figures[`secondUp.${tier}`] = Number(s);
    assertExited0(again, "second up", `${again.stderr}\n${again.stdout}`);
    const changes = again.stderr.match(new RegExp(`^lab ${lab.name}: (\\{.*\\})$`, "m"));
    assert.ok(changes, "up reports its resource changes");
    const counts = JSON.parse(changes[1]);
    assert.deepEqual(Object.keys(counts), ["same"], `second up changed: ${changes[1]}`);
    assert.match(again.stderr, /✓ probes: every network tier, bottom-up \(run while Pulumi found nothing to change\)/, "the probes overlapped Pulumi");
  });

  // ---- Probes on the live lab: healthy, then one fault at a time, each undone (and waited for) before the next. ----
  // The faults run with K8SLAB_E2E_FAULTS=1 (npm run test:e2e:lab sets it), not in CI: they add about
  // 8 minutes, and early full runs lost the API server during the last faults (docs/architecture.md, Tests).
  const faults = { skip: process.env.K8SLAB_E2E_FAULTS === "1" ? false : "set K8SLAB_E2E_FAULTS=1 to inject the four faults" };
  const notPassing = (run: Awaited<ReturnType<typeof probe>>) =>
    run.report.results.filter((t) => t.verdict !== "pass").map((t) => `${t.tier} ${t.verdict}${t.firstBrokenHop ? `: ${t.firstBrokenHop}` : ""}`);

  const probe = async () => {
    const from = Date.now();
    const r = await k8slab("probe", LAB_FILE, "--json");
    const report = JSON.parse(r.stdout) as ProbeReport;
    return { exitCode: r.exitCode, report, seconds: secs(from), tier: (id: string) => report.results.find((t) => t.tier === id)! };
  };
  /**
   * The fault shows at `tier` (failed, naming the hop), every tier that stands on it (TIER_DEPENDENCIES)
   * is blocked by it, and every other tier passes (faultVerdictProblems, unit-tested in e2e-checks.test.ts).
   */
  const failsAt = (run: Awaited<ReturnType<typeof probe>>, tier: TierId, hop: RegExp) => {
    assert.equal(run.exitCode, 1, "a failing tier makes probe exit 1");
    assert.deepEqual(faultVerdictProblems(run.report, tier), [], `verdicts: ${notPassing(run).join("; ")}`);
    const t = run.tier(tier);
    assert.match(`${t.firstBrokenHop}`, hop);
    assert.ok(t.likelyFix, `${tier} names a likely fix`);
  };

  // Three runs, minutes apart: a lab that is healthy right after `up` must stay so while it sits idle
  // (an overloaded node once made every later run fail, with no fault in the network).
  it(`every tier passes on the healthy lab, ${HEALTHY_RUNS} runs ${HEALTHY_GAP_SEC} s apart`, { timeout: 20 * 60_000 }, async () => {
    for (let i = 1; i <= HEALTHY_RUNS; i++) {
      if (i > 1) await new Promise((r) => setTimeout(r, HEALTHY_GAP_SEC * 1000));
      const run = await probe();
      figures[`probeSeconds.${i}`] = run.seconds;
      for (const t of run.report.results) figures[`probe${i}.${t.tier}`] = Math.round(t.durationMs / 100) / 10;
      assert.deepEqual(notPassing(run), [], `run ${i}`);
      assert.equal(run.exitCode, 0, `run ${i}`);
    }
  });

  it("flanneld stopped on node2 with its FDB entries removed: flannel fails at node2's FDB, pod-cross-node is blocked", {
    ...faults,
    timeout: 10 * 60_000,
  }, async () => {
    await onNode(
      "node2",
      'systemctl stop flanneld && bridge fdb show dev flannel.1 | grep " dst " | while read -r mac _ dst _; do bridge fdb del "$mac" dev flannel.1 dst "$dst"; done',
    );
    try {
      const run = await probe();
      failsAt(run, "flannel", hopOf("fdb-entry-missing"));
      assert.equal(run.tier("pod-cross-node").verdict, "blocked");
      assert.equal(run.tier("pod-cross-node").blockedBy, "flannel");
    } finally {
      // flanneld programs the FDB again from the leases when it starts.
      await onNode(
        "node2",
        `systemctl start flanneld && ${waitShell(`bridge fdb show dev flannel.1 | grep -q "dst ${lab.nodes[0].address} "`, "flanneld re-added node1's FDB entry", 120)}`,
      );
    }
  });

  it("kube-proxy's nat rules flushed on node1: service fails at KUBE-SERVICES", { ...faults, timeout: 10 * 60_000 }, async () => {
    // Stopped first, or it would write its rules back.
    await onNode("node1", "systemctl stop kube-proxy && iptables -t nat -F KUBE-SERVICES");
    try {
      failsAt(await probe(), "service", hopOf("kube-proxy-stopped"));
    } finally {
      await onNode(
        "node1",
        `systemctl start kube-proxy && ${waitShell("iptables -t nat -S KUBE-SERVICES | grep -q KUBE-SVC-", "kube-proxy rewrote its rules", 120)}`,
      );
    }
  });

  it("CoreDNS scaled to 0: dns fails", { ...faults, timeout: 10 * 60_000 }, async () => {
    await kubectl("-n", "kube-system", "scale", "deployment/coredns", "--replicas=0");
    try {
      await kubectl("-n", "kube-system", "wait", "--for=delete", "pod", "-l", "k8s-app=kube-dns", "--timeout=180s");
      failsAt(await probe(), "dns", hopOf("coredns-down"));
    } finally {
      await kubectl("-n", "kube-system", "scale", "deployment/coredns", "--replicas=2");
      await kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=300s");
    }
  });

  it("the ingress controller stopped: ingress fails with the connection refused on port 80", { ...faults, timeout: 10 * 60_000 }, async () => {
    // A DaemonSet has no replica count: a node selector no node has takes its pods away.
    await kubectl(
      "-n",
      "nginx-ingress",
      "patch",
      "daemonset/nginx-ingress",
      "-p",
      '{"spec":{"template":{"spec":{"nodeSelector":{"k8slab/fault":"ingress-stopped"}}}}}',
    );
    try {
      await kubectl("-n", "nginx-ingress", "wait", "--for=delete", "pod", "-l", "app=nginx-ingress", "--timeout=180s");
      failsAt(await probe(), "ingress", hopOf("ingress-controller-gone"));
    } finally {
      await kubectl(
        "-n",
        "nginx-ingress",
        "patch",
        "daemonset/nginx-ingress",
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/spec/template/spec/nodeSelector"}]',
      );
      await kubectl("-n", "nginx-ingress", "rollout", "status", "daemonset/nginx-ingress", "--timeout=300s");
    }
  });

  it("with every fault undone, every tier passes again", { ...faults, timeout: 10 * 60_000 }, async () => {
    assert.deepEqual(notPassing(await probe()), []);
  });

  // Three scenarios of the workshop catalog, each at another tier (the whole catalog: npm run test:e2e:scenarios).
  it(`the workshop scenarios ${CI_SCENARIOS.join(", ")}: break, caught at their tier, fixed`, { timeout: 30 * 60_000 }, async () => {
    const rows: string[] = [];
    try {
      for (const id of CI_SCENARIOS) {
        const s = loadCatalog(lab).scenarios.find((x) => x.id === id);
        assert.ok(s, `${id} is in the catalog`);
        const tried = await tryScenario(forLab(s, lab));
        rows.push(tried.row);
        tried.check();
      }
    } finally {
      process.stderr.write(`\n${SCENARIO_TABLE_HEAD}\n${rows.join("\n")}\n`);
    }
  });
});

// `k8slab trace` on the reference lab (root, real VMs): a cross-node pod-to-pod ping, a ClusterIP TCP
// connection (with the DNAT to the backend kube-proxy chose), a NodePort from the outside client and
// an ingress request, each with every observation point seen; then, with a DROP rule in node2's
// FORWARD chain, the trace names the point where the packet was lost. Prints each trace's time.
// `npm run test:e2e:trace` (on the tests' own reference lab, e2e-two-node: one that is up is used; one it
// brought up goes down after, unless K8SLAB_E2E_KEEP=1).
import "../../scripts/quiet-bash.ts";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { $ } from "zx";
import { labPaths } from "../../core/paths.ts";
import { bundleBinDir } from "../../scripts/toolchain/paths.ts";
import type { TraceReport } from "../../scripts/trace/run.ts";
import { k8slab, LAB_FILE, lab, onNode, referenceLabForSuite, secsSince } from "./reference-lab.ts";

const figures: Record<string, number> = {};
const DROP = `FORWARD -i ${lab.pods.flannel.device!} -o ${lab.pods.bridge} -j DROP`; // the reference lab: vxlan

type Report = Omit<TraceReport, "captured"> & { captured: { spot: string; packets: number }[] };

describe("k8slab trace on the reference lab", { skip: process.getuid?.() === 0 ? false : "needs root (namespaces, taps, VMs)" }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-trace-e2e-"));
  const trace = async (name: string, ...args: string[]) => {
    const from = Date.now();
    const r = await k8slab("trace", LAB_FILE, ...args, "--json", "--pcap", path.join(dir, name));
    figures[`${name} s`] = secsSince(from);
    assert.notEqual(r.exitCode, 2, r.stderr);
    return { exitCode: r.exitCode, report: JSON.parse(r.stdout) as Report, stderr: r.stderr };
  };
  /** Every point of every leg saw the request and its reply. */
  const everyPointSeen = (r: Report) => {
    assert.ok(r.legs.length > 0);
    for (const leg of r.legs) for (const p of leg.points) assert.equal(p.verdict, "seen", `${leg.name}: ${p.spot}${p.encap ? " (VXLAN)" : ""}`);
    assert.equal(r.ok, true);
  };
  /** Toolbox pods by index (the order trace counts them in), and the index of the one on `node`. */
  const toolboxIndexOn = async (node: string) => {
    const out = await $({
      quiet: true,
    })`${bundleBinDir()}/kubectl --kubeconfig ${labPaths(lab.name).adminKubeconfig} -n k8slab-probe get pods -l app=toolbox -o jsonpath=${'{range .items[*]}{.metadata.name} {.spec.nodeName}{"\\n"}{end}'}`;
    const rows = out.stdout
      .trim()
      .split("\n")
      .map((l) => l.split(" "))
      .sort((a, b) => a[0].localeCompare(b[0]));
    return rows.findIndex((r) => r[1] === node);
  };

  const reference = referenceLabForSuite();
  after(async () => {
    process.stderr.write(`trace e2e figures: ${JSON.stringify(figures)}\n`);
    await onNode(lab.nodes[1].name, `while iptables -D ${DROP} 2>/dev/null; do :; done`).catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
    await reference.downIfBroughtUp();
  });

  it("a cross-node pod-to-pod ping: seen at all ten points, there and back, VXLAN on the underlay", { timeout: 5 * 60_000 }, async () => {
    const to = await toolboxIndexOn(lab.nodes[1].name);
    const { report } = await trace("pod-to-pod", `toolbox/${1 - to}`, `toolbox/${to}`);
    everyPointSeen(report);
    const spots = report.legs[0].points.map((p) => `${p.spot}${p.encap ? " (VXLAN)" : ""}`);
    assert.equal(spots.length, 10, spots.join(", "));
    assert.ok(spots.includes(`${lab.nodes[0].name}/eth0 (VXLAN)`) && spots.includes(`${lab.nodes[1].name}/${lab.pods.flannel.device}`));
    const underlay = report.legs[0].points.find((p) => p.encap)!;
    assert.match(underlay.request[0].headers, new RegExp(`:${lab.pods.flannel.port} UDP.*VXLAN vni ${lab.pods.flannel.vni} .* ICMP echo request`));
    // pcapng per point, and all of them in one.
    const files = fs.readdirSync(path.join(dir, "pod-to-pod"));
    assert.ok(files.includes("all.pcapng") && files.length >= 11, files.join(", "));
    assert.equal(fs.readFileSync(path.join(dir, "pod-to-pod", "all.pcapng")).readUInt32LE(0), 0x0a0d0d0a);
  });

  it("a ClusterIP TCP connection: the DNAT to the backend kube-proxy chose, seen before and after", { timeout: 5 * 60_000 }, async () => {
    const { report } = await trace("clusterip", "toolbox", `svc/${lab.workloads.businessManager.name}`);
    everyPointSeen(report);
    assert.match(report.nat?.conntrack ?? "", /dport=80 src=172\.30\./);
    assert.match(report.nat?.rules.join("\n") ?? "", /KUBE-SVC-\S+ .*-j KUBE-SEP-[\s\S]*DNAT --to-destination/);
    const points = report.legs[0].points;
    const clusterIP = (
      await $({
        quiet: true,
      })`${bundleBinDir()}/kubectl --kubeconfig ${labPaths(lab.name).adminKubeconfig} get svc ${lab.workloads.businessManager.name} -o jsonpath={.spec.clusterIP}`
    ).stdout;
    assert.match(points[0].request[0].headers, new RegExp(`> ${clusterIP.replaceAll(".", "\\.")}:80 TCP \\[S\\]`), "the sender sends to the ClusterIP");
    assert.match(
      points.at(-1)!.request[0].headers,
      new RegExp(`> ${report.nat!.backend!.replaceAll(".", "\\.")} TCP \\[S\\]`),
      "the receiver gets it for itself",
    );
  });

  it("a NodePort from the outside client: in at the node, DNAT (and SNAT) there, to the backend", { timeout: 5 * 60_000 }, async () => {
    const { report } = await trace("nodeport", "client", `nodeport/${lab.nodes[1].name}`);
    everyPointSeen(report);
    assert.equal(report.legs[0].points[0].spot, "client/lan0");
    assert.equal(report.nat?.node, lab.nodes[1].name);
  });

  it("an ingress request: the client to nginx on the node, then nginx's own connection to a business-manager pod", { timeout: 5 * 60_000 }, async () => {
    const { report } = await trace("ingress", "client", "ingress");
    everyPointSeen(report);
    assert.deepEqual(
      report.legs.map((l) => l.name),
      ["client -> nginx", "nginx -> backend"],
    );
    assert.match(report.legs[1].to, new RegExp(`pod ${lab.workloads.businessManager.name}-`));
  });

  it("with a DROP rule in node2's FORWARD chain, the trace says the packet was lost after node2's VTEP, and shows the rule", {
    timeout: 5 * 60_000,
  }, async () => {
    const node2 = lab.nodes[1].name;
    const to = await toolboxIndexOn(node2);
    await onNode(node2, `iptables -I ${DROP.replace("FORWARD", "FORWARD 1")}`);
    try {
      const { exitCode, report } = await trace("fault", `toolbox/${1 - to}`, `toolbox/${to}`);
      assert.equal(exitCode, 1);
      assert.equal(report.ok, false);
      assert.match(report.lost?.after ?? "", new RegExp(`^${node2}/${lab.pods.flannel.device!.replace(".", "\\.")} `));
      assert.match(report.lost?.before ?? "", new RegExp(`^${node2}/${lab.pods.bridge} `));
      assert.match(report.lost!.state.map((s) => s.output).join("\n"), /\[[1-9]\d*:\d+\] -A FORWARD -i flannel\.1 -o cni0 -j DROP/);
    } finally {
      await onNode(node2, `while iptables -D ${DROP} 2>/dev/null; do :; done`);
    }
  });
});

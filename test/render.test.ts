// Rendered node files for the reference lab, compared with the readable copies under test/snapshots/.
// After an intended change, refresh them with K8SLAB_UPDATE_SNAPSHOTS=1 npm test and review the diff.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import type { Lab, LabNode } from "../core/index.ts";
import { parseLab } from "../core/lab.ts";
import { apiServerSANs } from "../core/node.ts";
import { renderFlannelNetConf } from "../infra/render/etcd.ts";
import {
  controlPlaneFiles,
  etcdFiles,
  flanneldInputs,
  flannelFiles,
  kubeProxyFiles,
  type NodeFile,
  nodeAgentFiles,
  renderEncryptionConfig,
  renderEtcdAuthScript,
  renderKubeconfig,
} from "../infra/render/index.ts";
import { unitDigest } from "../infra/tiers/remote.ts";
import { loadLab } from "../scripts/lab-file.ts";

const snapshots = path.join(import.meta.dirname, "snapshots/two-node");
const loaded = loadLab(path.join(import.meta.dirname, "../labs/two-node.yaml"));
assert.ok(loaded.ok);
const lab: Lab = loaded.lab;

function matchesSnapshot(file: string, actual: string) {
  const target = path.join(snapshots, file);
  if (process.env.K8SLAB_UPDATE_SNAPSHOTS === "1") {
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, actual);
  }
  assert.ok(existsSync(target), `no snapshot ${path.relative(process.cwd(), target)}; run with K8SLAB_UPDATE_SNAPSHOTS=1`);
  assert.equal(actual, readFileSync(target, "utf8"), `${file} differs from its snapshot`);
}

/** The pause image's ref as the image catalog names it (k8slab.local/<name>:<pinned version>). */
const PAUSE = "k8slab.local/pause:v1.0.0";
/** Every rendered file a node receives, all tiers together. */
function allNodeFiles(lab: Lab, node: LabNode, pauseImage: string): NodeFile[] {
  const perNode = [...nodeAgentFiles(lab, node, pauseImage), ...flannelFiles(lab, node), ...kubeProxyFiles(lab, node)];
  return node.isControlPlane ? [...etcdFiles(lab), ...controlPlaneFiles(lab), ...perNode] : perNode;
}

const perNode = lab.nodes.map((n) => [n.name, allNodeFiles(lab, n, PAUSE)] as const);

for (const [node, files] of perNode) {
  for (const f of files) test(`${node}:${f.path} matches its snapshot`, () => matchesSnapshot(`${node}${f.path}`, f.content));
}

test("every node's files carry the lab's values, not another node's", () => {
  // What runs on every node (the control plane's own files name node1 by design).
  const text = (i: number) =>
    [...nodeAgentFiles(lab, lab.nodes[i], PAUSE), ...flannelFiles(lab, lab.nodes[i]), ...kubeProxyFiles(lab, lab.nodes[i])].map((f) => f.content).join("\n");
  assert.match(text(1), /--node-ip=192\.168\.0\.22/);
  assert.match(text(1), /FLANNEL_SUBNET=172\.30\.2\.1\/24/);
  assert.match(text(1), /FLANNEL_MTU=1450/);
  assert.doesNotMatch(text(1), /192\.168\.0\.21(?!:2379)/, "node2's files name node1 only as the etcd endpoint");
  assert.match(text(0), /clusterDNS:\n  - 10\.254\.0\.2/);
});

test("the flannel network config is the lab's VXLAN backend", () => {
  const netConf = etcdFiles(lab).find((f) => f.path.endsWith("flannel-net-conf.json"))!;
  assert.deepEqual(JSON.parse(netConf.content), { Network: "172.30.0.0/16", SubnetLen: 24, Backend: { Type: "vxlan", VNI: 1, Port: 8472 } });
});

/** The reference lab with one line of its file changed. */
function labWith(from: string, to: string): Lab {
  const text = readFileSync(lab.file, "utf8");
  assert.ok(text.includes(from), from);
  const changed = parseLab(text.replace(from, to), lab.file);
  assert.ok(changed.ok, JSON.stringify(!changed.ok && changed.problems));
  return changed.lab;
}

/** Every unit's digest on every node: what decides whether `up` restarts it. */
function unitDigests(l: Lab): Record<string, string> {
  const out: Record<string, string> = {};
  for (const node of l.nodes) {
    const files = [...nodeAgentFiles(l, node, PAUSE), ...kubeProxyFiles(l, node), ...(node.isControlPlane ? [...etcdFiles(l), ...controlPlaneFiles(l)] : [])];
    for (const unit of [
      "containerd",
      "k8slab-netstamp",
      "kubelet",
      "kube-proxy",
      ...(node.isControlPlane ? ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"] : []),
    ]) {
      out[`${node.name}/${unit}`] = unitDigest(files, unit);
    }
    out[`${node.name}/flanneld`] = unitDigest(flanneldInputs(l, node), "flanneld");
  }
  return out;
}

const changedUnits = (a: Lab, b: Lab) => {
  const [before, after] = [unitDigests(a), unitDigests(b)];
  return Object.keys(before)
    .filter((k) => before[k] !== after[k])
    .sort();
};

test("a VNI change renames flannel's device and restarts flanneld on every node, and nothing else", () => {
  const vni2 = labWith("vni: 1 ", "vni: 2 ");
  assert.equal(lab.pods.flannel.device, "flannel.1");
  assert.equal(vni2.pods.flannel.device, "flannel.2", "flanneld names its device flannel.<VNI>");
  assert.equal(JSON.parse(etcdFiles(vni2).find((f) => f.path.endsWith("flannel-net-conf.json"))!.content).Backend.VNI, 2);
  const unit = flannelFiles(vni2, vni2.nodes[1]).find((f) => f.path.endsWith("flanneld.service"))!.content;
  assert.match(unit, /\[ "\$\$d" = "flannel\.2" \] \|\| ip link delete "\$\$d"/, "the old device is removed before flanneld starts");
  assert.deepEqual(changedUnits(lab, vni2), ["node1/flanneld", "node2/flanneld"]);
  assert.deepEqual(changedUnits(lab, labWith("port: 8472 ", "port: 8999 ")), ["node1/flanneld", "node2/flanneld"], "a VXLAN port change too");
});

test("a unit restarts when a file it reads changes, and only then", () => {
  // kubelet.yaml names the DNS IP: kubelet restarts, containerd (same tier) does not.
  assert.deepEqual(changedUnits(lab, labWith("dnsIP: 10.254.0.2 ", "dnsIP: 10.254.0.3 ")), ["node1/kubelet", "node2/kubelet"]);
  // The NodePort range is the API server's flag: the controller-manager and scheduler beside it stay up.
  assert.deepEqual(changedUnits(lab, labWith("nodePortRange: 30000-32767", "nodePortRange: 30000-32000")), ["node1/kube-apiserver"]);
});

test("the CNI bridge is named by the lab file", () => {
  const docker0 = { ...lab, pods: { ...lab.pods, bridge: "docker0" as const } };
  const cni = nodeAgentFiles(docker0, lab.nodes[0], PAUSE).find((f) => f.path.endsWith(".conflist"))!;
  assert.equal(JSON.parse(cni.content).plugins[0].delegate.bridge, "docker0");
});

test("the API server certificate covers the Service IP, the node and the host forward", () => {
  const sans = apiServerSANs(lab);
  assert.deepEqual(sans.ips, ["10.254.0.1", "192.168.0.21", "127.0.0.1"]);
  assert.ok(sans.dns.includes("kubernetes.default.svc.cluster.local"));
});

test("a kubeconfig embeds base64 PEM and one matching context", () => {
  const k = renderKubeconfig({
    clusterName: "two-node",
    server: "https://127.0.0.1:16443",
    caCertPem: "CA",
    user: "admin",
    clientCertPem: "CERT",
    clientKeyPem: "KEY",
  });
  assert.match(k, /certificate-authority-data: Q0E=/);
  assert.match(k, /client-key-data: S0VZ/);
  assert.match(k, /current-context: admin@two-node/);
});

test("the control plane and kubelet are set as the CIS benchmark asks; keys are written with no window for others", async () => {
  const cp = Object.fromEntries(controlPlaneFiles(lab).map((f) => [path.basename(f.path), f.content]));
  for (const unit of ["kube-apiserver.service", "kube-controller-manager.service", "kube-scheduler.service"]) assert.match(cp[unit], /--profiling=false/, unit);
  for (const unit of ["kube-controller-manager.service", "kube-scheduler.service"]) assert.match(cp[unit], /--bind-address=127\.0\.0\.1/, unit);
  assert.match(cp["kube-apiserver.service"], /--tls-min-version=VersionTLS12/);
  assert.match(
    cp["kube-apiserver.service"],
    /--audit-policy-file=\/etc\/kubernetes\/config\/audit-policy\.yaml \\\n {2}--audit-log-path=\/var\/log\/kubernetes\/audit\.log/,
  );
  assert.match(cp["audit-policy.yaml"], /level: Metadata\n$/, "metadata only: no Secret body in the log");
  const kubelet = nodeAgentFiles(lab, lab.nodes[1], PAUSE).find((f) => f.path.endsWith("kubelet.yaml"))!.content;
  assert.match(kubelet, /^readOnlyPort: 0$/m);
  assert.match(kubelet, /^tlsMinVersion: VersionTLS12$/m);
  const { installScript } = await import("../infra/tiers/remote.ts");
  assert.match(
    installScript([{ path: "/etc/kubernetes/pki/x.key", content: "k", mode: "0600" }]),
    /^\(umask 077 && base64 -d > \/etc\/kubernetes\/pki\/x\.key\.k8slab-new\) <<'EOF'$/m,
  );
});

test("etcd trusts only its own CA; auth confines flannel to its prefix; Secrets are encrypted at rest", () => {
  const etcd = etcdFiles(lab).find((f) => f.path.endsWith("etcd.service"))!.content;
  assert.match(etcd, /--trusted-ca-file=\/etc\/kubernetes\/pki\/etcd-ca\.crt/);
  assert.match(etcd, /--peer-trusted-ca-file=\/etc\/kubernetes\/pki\/etcd-ca\.crt/);
  const auth = renderEtcdAuthScript(lab);
  assert.match(auth, /role grant-permission --prefix=true flannel readwrite \/coreos\.com\/network\/ /);
  assert.match(auth, /user grant-role flannel flannel /);
  assert.match(auth, /user grant-role kube-apiserver-etcd-client root /);
  assert.match(auth, /--cert=\/etc\/kubernetes\/pki\/apiserver-etcd-client\.crt/, "run as the API server's client, root once auth is on");
  assert.ok(auth.indexOf("auth enable") > auth.lastIndexOf("grant-role"), "auth goes on after every user has its role");
  const cp = Object.fromEntries(controlPlaneFiles(lab).map((f) => [path.basename(f.path), f.content]));
  assert.match(cp["kube-apiserver.service"], /--etcd-cafile=\/etc\/kubernetes\/pki\/etcd-ca\.crt/);
  assert.match(cp["kube-apiserver.service"], /--encryption-provider-config=\/etc\/kubernetes\/config\/encryption-config\.yaml/);
  const enc = renderEncryptionConfig("S0VZ");
  assert.ok(enc.indexOf("secretbox") < enc.indexOf("identity"), "new Secrets are encrypted; identity only reads old ones");
  assert.match(enc, /secret: S0VZ\n/);
});

test("variants: each flannel backend's device, MTU and net-conf, each kube-proxy mode's config", () => {
  const load = (f: string) => {
    const r = loadLab(path.join(import.meta.dirname, "..", "labs", "variants", f));
    assert.ok(r.ok, f);
    return r.lab;
  };
  const hostGw = load("host-gw.yaml");
  assert.deepEqual([hostGw.pods.flannel.device, hostGw.pods.flannel.port, hostGw.pods.mtu], [undefined, undefined, 1500]);
  assert.deepEqual(JSON.parse(renderFlannelNetConf(hostGw)).Backend, { Type: "host-gw" });
  const udp = load("udp.yaml");
  assert.deepEqual([udp.pods.flannel.device, udp.pods.flannel.port, udp.pods.mtu], ["flannel0", 8285, 1472]);
  assert.deepEqual(JSON.parse(renderFlannelNetConf(udp)).Backend, { Type: "udp", Port: 8285 });
  assert.deepEqual(JSON.parse(renderFlannelNetConf(lab)).Backend, { Type: "vxlan", VNI: 1, Port: 8472 }, "the reference lab as before");
  const proxy = (l: Lab) => kubeProxyFiles(l, l.nodes[0]).find((f) => f.path.endsWith("kube-proxy.yaml"))!.content;
  assert.match(proxy(load("ipvs.yaml")), /^mode: ipvs\nipvs:\n {2}scheduler: rr\n {2}strictARP: true$/m);
  assert.match(proxy(load("nftables.yaml")), /^mode: nftables$/m);
  assert.match(kubeProxyFiles(load("nftables.yaml"), lab.nodes[0]).find((f) => f.path.endsWith(".service"))!.content, /an nftables table/);
});

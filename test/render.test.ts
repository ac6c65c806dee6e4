// Rendered node files for the reference lab, compared with the readable copies under test/snapshots/.
// After an intended change, refresh them with K8SLAB_UPDATE_SNAPSHOTS=1 npm test and review the diff.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { loadLab, type Lab } from "../core/index.js";
import { allNodeFiles, apiServerSANs, etcdFiles, flannelFiles, kubeProxyFiles, nodeAgentFiles, renderKubeconfig } from "../infra/render/index.js";

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
const perNode = lab.nodes.map((n) => [n.name, allNodeFiles(lab, n, PAUSE)] as const);

for (const [node, files] of perNode) {
  for (const f of files) test(`${node}:${f.path} matches its snapshot`, () => matchesSnapshot(`${node}${f.path}`, f.content));
}

test("every node's files carry the lab's values, not another node's", () => {
  // What runs on every node (the control plane's own files name node1 by design).
  const text = (i: number) => [...nodeAgentFiles(lab, lab.nodes[i], PAUSE), ...flannelFiles(lab, lab.nodes[i]), ...kubeProxyFiles(lab, lab.nodes[i])].map((f) => f.content).join("\n");
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
  const k = renderKubeconfig({ clusterName: "two-node", server: "https://127.0.0.1:16443", caCertPem: "CA", user: "admin", clientCertPem: "CERT", clientKeyPem: "KEY" });
  assert.match(k, /certificate-authority-data: Q0E=/);
  assert.match(k, /client-key-data: S0VZ/);
  assert.match(k, /current-context: admin@two-node/);
});

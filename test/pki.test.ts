// The PKI: which certificates exist, and that generated ones verify and carry the names clients check.

import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import path from "node:path";
import { test } from "node:test";
import { ETCD_USERS } from "../core/names.ts";
import { loadLab } from "../scripts/lab-file.ts";
import { certificateCatalog } from "../scripts/pki/catalog.ts";
import { createCa, createEncryptionKey, createServiceAccountKeys, issueCertificate } from "../scripts/pki/generate.ts";

const loaded = loadLab(path.join(import.meta.dirname, "../labs/two-node.yaml"));
assert.ok(loaded.ok);
const catalog = certificateCatalog(loaded.lab);
const byName = (name: string) => catalog.find((c) => c.name === name)!;

test("kubelet certificates use the names the Node authorizer accepts", () => {
  for (const node of ["node1", "node2"]) {
    const spec = byName(`kubelet-${node}`);
    assert.equal(spec.commonName, `system:node:${node}`);
    assert.equal(spec.organization, "system:nodes");
    assert.deepEqual(spec.nodes, [node]);
  }
});

test("control-plane secrets stay on the control plane; admin on the host", () => {
  for (const name of ["etcd-server", "etcd-peer", "apiserver", "apiserver-etcd-client", "controller-manager", "scheduler"]) {
    assert.deepEqual(byName(name).nodes, ["node1"], name);
  }
  assert.deepEqual(byName("admin").nodes, []);
  assert.deepEqual(byName("kube-proxy").nodes, ["node1", "node2"]);
  assert.equal(new Set(catalog.map((c) => c.name)).size, catalog.length, "names are unique");
});

test("etcd's CA signs etcd's own certificates and its two clients, named as etcd's users; every node file has a reader", () => {
  assert.deepEqual(
    catalog
      .filter((c) => c.ca === "etcd-ca")
      .map((c) => c.name)
      .sort(),
    ["apiserver-etcd-client", "etcd-peer", "etcd-server", "flannel-etcd-client"],
  );
  assert.equal(byName("flannel-etcd-client").commonName, ETCD_USERS.flannel);
  assert.equal(byName("apiserver-etcd-client").commonName, ETCD_USERS.apiServer);
  assert.deepEqual(byName("flannel-etcd-client").readBy, ["flanneld"]);
  for (const c of catalog.filter((c) => c.nodes.length)) assert.ok(c.readBy.length, `${c.name} restarts a unit when renewed`);
});

test("the Secrets encryption key is 32 random bytes", () => {
  const a = Buffer.from(createEncryptionKey().key, "base64");
  assert.equal(a.length, 32);
  assert.notDeepEqual(a, Buffer.from(createEncryptionKey().key, "base64"));
});

test("an issued certificate verifies against the CA and carries its SANs and groups", async () => {
  const ca = await createCa("k8slab-two-node CA");
  const spec = byName("apiserver");
  const leaf = await issueCertificate(ca, spec);
  const caCert = new X509Certificate(ca.certPem);
  const cert = new X509Certificate(leaf.certPem);
  assert.ok(caCert.ca);
  assert.ok(cert.verify(caCert.publicKey), "signed by the CA");
  assert.ok(cert.checkIssued(caCert));
  assert.ok(!cert.ca);
  assert.equal(cert.checkIP("10.254.0.1"), "10.254.0.1");
  assert.equal(cert.checkIP("127.0.0.1"), "127.0.0.1");
  assert.equal(cert.checkHost("kubernetes.default.svc.cluster.local"), "kubernetes.default.svc.cluster.local");
  assert.equal(cert.checkIP("192.168.0.22"), undefined, "not valid for node2");
  assert.ok(cert.checkPrivateKey(createPrivateKey(leaf.keyPem)), "the key matches");
  const kubelet = new X509Certificate((await issueCertificate(ca, byName("kubelet-node2"))).certPem);
  assert.match(kubelet.subject, /CN=system:node:node2\nO=system:nodes/);
  assert.ok(!kubelet.verify(createPublicKey((await createCa("another CA")).certPem)), "another CA does not verify it");
});

test("service-account keys are a matching pair", async () => {
  const { publicKeyPem, privateKeyPem } = await createServiceAccountKeys();
  const fromPrivate = createPublicKey(createPrivateKey(privateKeyPem)).export({ type: "spki", format: "pem" });
  assert.equal(fromPrivate, publicKeyPem);
});

test("expiry is read from what the nodes and the host hold: every .crt, and a kubeconfig's client certificate", async () => {
  const { parseNodeCerts, kubeconfigCert, firstToExpire, renderCertificates } = await import("../scripts/pki/expiry.ts");
  const { renderKubeconfig } = await import("../infra/render/index.ts");
  const ca = await createCa("k8slab two-node CA");
  const leaf = await issueCertificate(ca, byName("apiserver"));
  const now = Date.now();
  const dump = `== /etc/kubernetes/pki/ca.crt\n${ca.certPem}== /etc/kubernetes/pki/apiserver.crt\n${leaf.certPem}`;
  const certs = parseNodeCerts("node1", dump, now);
  assert.deepEqual(
    certs.map((c) => [c.file, c.isCa, c.daysLeft]),
    [
      ["/etc/kubernetes/pki/ca.crt", true, 3649],
      ["/etc/kubernetes/pki/apiserver.crt", false, 364],
    ],
  );
  assert.match(certs[1].subject, /^CN=kube-apiserver$/);
  assert.equal(firstToExpire(certs)?.file, "/etc/kubernetes/pki/apiserver.crt", "a CA is not a leaf to renew");
  const admin = await issueCertificate(ca, byName("admin"));
  const kubeconfig = renderKubeconfig({
    clusterName: "two-node",
    server: "https://127.0.0.1:16443",
    caCertPem: ca.certPem,
    user: "admin",
    clientCertPem: admin.certPem,
    clientKeyPem: admin.keyPem,
  });
  const fromHost = kubeconfigCert("host", "admin.kubeconfig", kubeconfig, now);
  assert.match(fromHost!.subject, /CN=admin, O=kubeadm:cluster-admins/);
  assert.match(
    renderCertificates([...certs, fromHost!], ["node2"]),
    /node1 {4}apiserver\.crt .* \(364 days\) {2}CN=kube-apiserver\n[\s\S]*not read \(not running\): node2/,
  );
});

// The lab's etcd flags and auth script against a real etcd (the bundle's), in a network namespace of
// its own (unshare: it ends with the process): etcd trusts only its CA, flannel's key reaches only
// flannel's prefix, the API server's key everything, and the script can run again. Needs root and a
// built bundle; skipped otherwise. etcd is the test's own (test/owned.ts): a process group of its own,
// stopped after, and killed by the kernel if the test's process dies first, SIGKILL included.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, it } from "node:test";
import { FLANNEL_ETCD_PREFIX } from "../core/names.ts";
import { CA, ETCD_CLIENT_CERT, etcdctlCommand, etcdEndpoint, NODE_PATHS } from "../core/node.ts";
import { renderEtcdAuthScript, renderEtcdUnit } from "../infra/render/etcd.ts";
import { loadLab } from "../scripts/lab-file.ts";
import { certificateCatalog } from "../scripts/pki/catalog.ts";
import { createCa, issueCertificate } from "../scripts/pki/generate.ts";
import { bundleBinDir, repoRoot } from "../scripts/toolchain/paths.ts";
import { atAbnormalEnd, type Owned, spawnOwned, withDeathSignal } from "./owned.ts";

const loaded = loadLab(path.join(repoRoot, "labs/two-node.yaml"));
assert.ok(loaded.ok);
const lab = loaded.lab;
const bin = bundleBinDir();
const skip = process.getuid?.() !== 0 ? "needs root" : !fs.existsSync(path.join(bin, "etcd")) ? "no bundle (k8slab toolchain)" : false;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-etcd-auth-"));
// Stopped with no `after` (a signal, the runner gone): etcd is stopped by then (owned.ts), its folder goes too.
atAbnormalEnd(() => fs.rmSync(tmp, { recursive: true, force: true }));
/** The node's paths, moved into the temp dir. */
const local = (text: string) => text.replaceAll(`${NODE_PATHS.pki}/`, `${tmp}/`).replaceAll(`${NODE_PATHS.bin}/`, `${bin}/`);
let etcd: Owned | undefined;
let etcdLog = ""; // for the message when etcd does not start
/** Runs a shell command in etcd's namespace (it too dies with the test's process). */
const inNetns = (command: string) => {
  const [file, ...argv] = withDeathSignal("KILL", "nsenter", [`--net=/proc/${etcd!.pid}/ns/net`, "bash", "-c", local(command)]);
  return spawnSync(file, argv, { encoding: "utf8", timeout: 30_000 });
};

before(async () => {
  if (skip) return;
  const cas = { [CA.kubernetes]: await createCa("test CA"), [CA.etcd]: await createCa("test etcd CA") };
  for (const [name, ca] of Object.entries(cas)) fs.writeFileSync(path.join(tmp, `${name}.crt`), ca.certPem);
  for (const spec of certificateCatalog(lab).filter((c) => c.ca === CA.etcd || c.name === "kubelet-node1")) {
    const issued = await issueCertificate(cas[spec.ca], spec);
    fs.writeFileSync(path.join(tmp, `${spec.name}.crt`), issued.certPem);
    fs.writeFileSync(path.join(tmp, `${spec.name}.key`), issued.keyPem, { mode: 0o600 });
  }
  // The unit's own flags, one per line after ExecStart, with the data dir in the temp dir.
  const flags = [...renderEtcdUnit(lab).matchAll(/^ {2}(--\S+?)(?: \\)?$/gm)].map((m) => local(m[1]).replace(`=${NODE_PATHS.etcdData}`, `=${tmp}/data`));
  assert.ok(flags.some((f) => f.startsWith("--trusted-ca-file=")));
  const address = lab.controlPlane.address;
  // unshare and bash exec etcd: one process, the group's leader, with the parent-death signal kept across the execs.
  etcd = spawnOwned("unshare", ["--net", "bash", "-c", `ip link set lo up && ip addr add ${address}/32 dev lo && exec ${bin}/etcd "$@"`, "etcd", ...flags], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  etcd.child.stderr!.on("data", (d) => {
    etcdLog += d;
  });
  const deadline = Date.now() + 30_000;
  while (inNetns(`${etcdctlCommand(lab, ETCD_CLIENT_CERT.apiServer)} endpoint health`).status !== 0) {
    assert.ok(Date.now() < deadline && etcd.running(), `etcd did not start:\n${etcdLog.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 300));
  }
});

after(async () => {
  await etcd?.stop("SIGTERM", 10_000);
  fs.rmSync(tmp, { recursive: true, force: true });
});

const asFlannel = etcdctlCommand(lab);
const asApiServer = etcdctlCommand(lab, ETCD_CLIENT_CERT.apiServer);

it("the auth script turns auth on and can run again", { skip, timeout: 60_000 }, () => {
  for (const round of [1, 2]) {
    const r = inNetns(renderEtcdAuthScript(lab));
    assert.equal(r.status, 0, `round ${round}: ${r.stderr}`);
  }
  assert.match(inNetns(`${asApiServer} auth status`).stdout, /Authentication Status: true/);
});

it("flannel's key reads and writes flannel's prefix and nothing else", { skip, timeout: 30_000 }, () => {
  assert.equal(inNetns(`${asFlannel} put ${FLANNEL_ETCD_PREFIX}/config '{}'`).status, 0);
  assert.match(inNetns(`${asFlannel} get --prefix ${FLANNEL_ETCD_PREFIX}/`).stdout, /\/coreos\.com\/network\/config/);
  assert.equal(inNetns(`${asApiServer} put /registry/secrets/default/s x`).status, 0, "the API server's key may write /registry");
  const read = inNetns(`${asFlannel} get /registry/secrets/default/s`);
  assert.notEqual(read.status, 0);
  assert.match(read.stderr, /permission denied/);
  assert.match(inNetns(`${asFlannel} put /registry/x y`).stderr, /permission denied/);
});

it("a certificate of the Kubernetes CA (a kubelet's) is refused in the TLS handshake", { skip, timeout: 30_000 }, () => {
  // TLS 1.2: etcd's refusal comes inside the handshake, as an alert curl names (with 1.3 it can arrive as a reset).
  const curl = (cert: string) =>
    inNetns(
      `curl -sS --max-time 5 --tls-max 1.2 --cacert ${NODE_PATHS.pki}/${CA.etcd}.crt --cert ${NODE_PATHS.pki}/${cert}.crt --key ${NODE_PATHS.pki}/${cert}.key ${etcdEndpoint(lab)}/version`,
    );
  assert.match(curl(ETCD_CLIENT_CERT.flannel).stdout, /"etcdserver"/, "an etcd-CA client gets through");
  const kubelet = curl("kubelet-node1");
  assert.notEqual(kubelet.status, 0);
  assert.match(kubelet.stderr, /unknown ca|bad certificate/);
});

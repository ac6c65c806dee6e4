// End-to-end proof of the lab's hardening and lifecycle on the reference lab (root, real VMs): what
// etcd and the API server refuse, Secrets encrypted in etcd, the audit log, and `up` under a second
// `up`, an interrupt and killed VMs. Each check's time goes into the figures printed at the end.
// Run: npm run test:e2e:security   (on the tests' own reference lab, e2e-two-node: one that is up is used as
// it is; K8SLAB_E2E_KEEP=1 keeps it up afterwards)
import "../../scripts/quiet-bash.ts";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { $ } from "zx";
import { FLANNEL_ETCD_PREFIX } from "../../core/names.ts";
import { apiServerURL, CA, caCert, ETCD_CLIENT_CERT, etcdctlCommand, etcdEndpoint, pki } from "../../core/node.ts";
import { labPaths, runRoot } from "../../core/paths.ts";
import { AUDIT_LOG } from "../../infra/render/controlplane.ts";
import { labStatus } from "../../scripts/machines/lab.ts";
import { certificateCatalog } from "../../scripts/pki/catalog.ts";
import type { CertExpiry } from "../../scripts/pki/expiry.ts";
import { bundleBinDir, repoRoot } from "../../scripts/toolchain/paths.ts";
import { spawnOwned } from "../owned.ts";
import { assertExited0, K8SLAB_RUN, k8slab, LAB_FILE, lab, labIsUp, onNode, ownRunsAndLabs, secsSince } from "./reference-lab.ts";

const [cp, worker] = [lab.controlPlane.name, lab.nodes.find((n) => !n.isControlPlane)!.name];
const figures: Record<string, number> = {};
const secs = secsSince;
const NODE = path.join(repoRoot, "node_modules/.bin/node");
/**
 * `k8slab up` as its own process, so a signal reaches it alone (as `kill` would, not the terminal's whole
 * group); in a process group the test owns, stopped with the test that started it (test/owned.ts).
 */
const startUp = () => {
  const { child, exited } = spawnOwned(NODE, ["scripts/bin/k8slab.mjs", "up", LAB_FILE], { cwd: repoRoot, ...K8SLAB_RUN, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  return { child, exited, output: () => out };
};
const until = async (what: string, seconds: number, check: () => boolean | Promise<boolean>) => {
  const deadline = Date.now() + seconds * 1000;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `not within ${seconds} s: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
};
/** Pulumi's processes: its CLI, its language host and program, its providers. */
const pulumiProcesses = () =>
  spawnSync("ps", ["-eo", "pid=,stat=,args="], { encoding: "utf8" })
    .stdout.split("\n")
    // A zombie (stat Z) has ended; it only waits for its parent (here PID 1) to collect its exit status.
    .filter((l) => /pulumi/.test(l) && !/^\s*\d+\s+Z/.test(l));

describe("the reference lab's hardening and lifecycle", { skip: process.getuid?.() === 0 ? false : "needs root (namespaces, taps, VMs)" }, () => {
  const kubectl = (...args: string[]) =>
    $({ quiet: true, nothrow: true })`${bundleBinDir()}/kubectl --kubeconfig ${labPaths(lab.name).adminKubeconfig} ${args}`;

  ownRunsAndLabs([LAB_FILE]);
  before(async () => {
    if (await labIsUp()) return;
    const from = Date.now();
    const up = await k8slab("up", LAB_FILE);
    figures["up from nothing s"] = secs(from);
    assertExited0(up, "up", up.stderr);
  });

  after(async () => {
    process.stderr.write(`security e2e figures: ${JSON.stringify(figures)}\n`);
    if (process.env.K8SLAB_E2E_KEEP !== "1") assert.equal((await k8slab("down", LAB_FILE)).exitCode, 0);
  });

  it("etcd refuses the worker's kubelet certificate in the handshake, and its flannel key for /registry", async () => {
    const from = Date.now();
    const kubelet = await onNode(
      worker,
      // TLS 1.2: etcd's refusal comes inside the handshake, as an alert curl names (with 1.3 it can arrive as a reset).
      `curl -sS --max-time 10 --tls-max 1.2 --cacert ${caCert(CA.etcd)} --cert ${pki(`kubelet-${worker}.crt`)} --key ${pki(`kubelet-${worker}.key`)} ${etcdEndpoint(lab)}/version 2>&1`,
    );
    assert.notEqual(kubelet.rc, 0, kubelet.out);
    assert.match(kubelet.out, /unknown ca|bad certificate/);
    // flannel's key (every node holds the same one), with etcdctl where it is installed: its own prefix yes, the cluster's objects no.
    const flannel = etcdctlCommand(lab);
    const own = await onNode(cp, `${flannel} get --prefix --keys-only ${FLANNEL_ETCD_PREFIX}/subnets 2>&1`);
    assert.equal(own.rc, 0, own.out);
    assert.match(own.out, /\/coreos\.com\/network\/subnets\//);
    const registry = await onNode(cp, `${flannel} get --prefix --keys-only /registry/secrets 2>&1`);
    assert.notEqual(registry.rc, 0);
    assert.match(registry.out, /permission denied/);
    figures["etcd refusals s"] = secs(from);
  });

  it("the API server refuses an anonymous request and the worker's kubelet for what RBAC does not grant", async () => {
    const from = Date.now();
    const anonymous = await onNode(cp, `curl -s -o /dev/null -w "%{http_code}" --cacert ${caCert(CA.kubernetes)} https://127.0.0.1:6443/api/v1/namespaces`);
    assert.equal(anonymous.out.trim(), "401");
    // The worker's kubelet credentials, from the worker, straight at the API server.
    const asKubelet = (method: string, urlPath: string, body = "") =>
      onNode(
        worker,
        `curl -s -X ${method} --cacert ${caCert(CA.kubernetes)} --cert ${pki(`kubelet-${worker}.crt`)} --key ${pki(`kubelet-${worker}.key`)} ` +
          `-H 'Content-Type: application/merge-patch+json' ${body ? `-d '${body}' ` : ""}${apiServerURL(lab)}${urlPath}`,
      );
    const secrets = await asKubelet("GET", "/api/v1/secrets");
    assert.match(secrets.out, /"code": 403/);
    assert.match(secrets.out, new RegExp(`User \\\\"system:node:${worker}\\\\" cannot list resource \\\\"secrets\\\\"`));
    const otherNode = await asKubelet("PATCH", `/api/v1/nodes/${cp}`, '{"metadata":{"labels":{"k8slab-e2e":"1"}}}');
    assert.match(otherNode.out, /"code": 403/, "NodeRestriction: a kubelet may not change another node");
    figures["API refusals s"] = secs(from);
  });

  it("a Secret written through the API is encrypted in etcd, and the audit log records the write", async () => {
    const from = Date.now();
    const name = `k8slab-e2e-${Date.now()}`;
    const canary = "plaintext-canary-5b2f";
    assert.equal((await kubectl("create", "secret", "generic", name, `--from-literal=token=${canary}`)).exitCode, 0);
    try {
      const stored = await onNode(
        cp,
        `${etcdctlCommand(lab, ETCD_CLIENT_CERT.apiServer)} get /registry/secrets/default/${name} --print-value-only | head -c 64 | tr -c '[:print:]' '.'`,
      );
      assert.match(stored.out, /^k8s:enc:secretbox:v1:key1:/);
      const raw = await onNode(
        cp,
        `${etcdctlCommand(lab, ETCD_CLIENT_CERT.apiServer)} get /registry/secrets/default/${name} --print-value-only | grep -c ${canary}`,
      );
      assert.equal(raw.out.trim(), "0", "the value is nowhere in etcd as plaintext");
      assert.equal((await kubectl("get", "secret", name, "-o", "jsonpath={.data.token}")).stdout, Buffer.from(canary).toString("base64"));
      figures["Secret encrypted s"] = secs(from);
      const auditFrom = Date.now();
      await until("the audit log records the create", 30, async () => {
        const line = await onNode(cp, `grep '"verb":"create"' ${AUDIT_LOG} | grep -c '"name":"${name}"'`);
        return Number(line.out.trim()) > 0;
      });
      const entry = await onNode(cp, `grep '"name":"${name}"' ${AUDIT_LOG} | head -1`);
      assert.match(entry.out, /"user":\{"username":"admin","groups":\["kubeadm:cluster-admins"/);
      assert.doesNotMatch(entry.out, new RegExp(canary), "metadata only: the Secret's value is not in the log");
      figures["audit record s"] = secs(auditFrom);
    } finally {
      await kubectl("delete", "secret", name);
    }
  });

  it("certs --renew issues every leaf again without a rebuild; the CAs stay, every tier passes after", { timeout: 30 * 60_000 }, async () => {
    const read = async () => {
      const r = await k8slab("certs", LAB_FILE, "--json");
      assert.equal(r.exitCode, 0, r.stderr);
      const { certificates } = JSON.parse(r.stdout) as { certificates: CertExpiry[] };
      return new Map(certificates.map((c) => [`${c.where}:${c.file}`, c]));
    };
    const before = await read();
    // Every node's own certificates and the two CAs, and the host's two kubeconfigs.
    const expected = lab.nodes.reduce((n, node) => n + 2 + certificateCatalog(lab).filter((c) => c.nodes.includes(node.name)).length, 2);
    assert.equal(before.size, expected, `${before.size} certificates read`);
    const from = Date.now();
    const renew = await k8slab("certs", LAB_FILE, "--renew");
    figures["certs --renew s"] = secs(from);
    assertExited0(renew, "certs --renew", renew.stderr);
    assert.match(renew.stderr, /✓ probes: every network tier/);
    const after = await read();
    for (const [key, c] of before) {
      const now = after.get(key);
      assert.ok(now, `${key} is still there`);
      if (c.isCa) assert.equal(now.notAfter, c.notAfter, `${key}: a CA is not renewed`);
      else assert.ok(now.notAfter > c.notAfter, `${key} renewed: ${c.notAfter} -> ${now.notAfter}`);
    }
  });

  it("a second up while one runs is refused within 5 s, naming the first", { timeout: 20 * 60_000 }, async () => {
    const first = startUp();
    // The first up is awaited whatever the assertions below find: the next test needs the lab it leaves,
    // and its lock (which a second up or `down` would meet).
    let firstCode: number | null;
    try {
      const holder = path.join(runRoot(), `${lab.name}.lifecycle.holder`);
      await until("the first up holds the lab's lock", 60, () => fs.existsSync(holder));
      const from = Date.now();
      const second = await k8slab("up", LAB_FILE);
      figures["second up refused s"] = secs(from);
      assert.equal(second.exitCode, 2, second.stderr);
      assert.match(second.stderr, new RegExp(`is being changed right now \\(\`k8slab up\` pid ${first.child.pid} `));
      assert.ok(figures["second up refused s"] <= 5, `refused after ${figures["second up refused s"]} s`);
    } finally {
      firstCode = await first.exited;
    }
    assert.equal(firstCode, 0, first.output().split("\n").slice(-30).join("\n"));
  });

  it("up interrupted in Pulumi's step leaves no process and no lock, and the next up converges", { timeout: 30 * 60_000 }, async () => {
    const run = startUp();
    await until("up reaches Pulumi's step", 300, () => /• pulumi up:/.test(run.output()));
    await new Promise((r) => setTimeout(r, 5000)); // well inside: refresh is running
    const from = Date.now();
    run.child.kill("SIGINT");
    const code = await run.exited;
    figures["interrupt to exit s"] = secs(from);
    assert.equal(code, 130, run.output().split("\n").slice(-20).join("\n"));
    assert.match(run.output(), /SIGINT: asking Pulumi to stop/);
    assert.deepEqual(pulumiProcesses(), [], "no pulumi process is left");
    assert.equal(fs.existsSync(path.join(runRoot(), `${lab.name}.lifecycle.holder`)), false, "the lab lock is released");
    const again = Date.now();
    const up = await k8slab("up", LAB_FILE);
    figures["up after interrupt s"] = secs(again);
    assertExited0(up, "up", up.stderr);
  });

  it("after its VMs are killed, one up brings the lab back, every tier passing", { timeout: 40 * 60_000 }, async () => {
    const vms = (await labStatus(lab.name)).nodes.filter((n) => n.running && n.pid);
    assert.equal(vms.length, lab.nodes.length);
    for (const vm of vms) process.kill(vm.pid!, "SIGKILL"); // QEMU processes this lab started (their pidfiles)
    await until("the VMs are gone", 30, async () => !(await labIsUp()));
    const from = Date.now();
    const up = await k8slab("up", LAB_FILE);
    figures["up after VMs killed s"] = secs(from);
    assertExited0(up, "up", up.stderr);
    assert.match(up.stderr, /the lab's VMs are not running/);
    assert.match(up.stderr, /✓ probes: every network tier/);
  });
});

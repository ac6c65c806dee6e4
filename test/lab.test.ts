// Lab files: every fixture under test/fixtures/labs is checked; invalid ones list, in "# expect:" lines, exactly the problems they must produce.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { ownsMachines, parseLab } from "../core/index.ts";
import { loadLab } from "../scripts/lab-file.ts";

const fixtures = path.join(import.meta.dirname, "fixtures/labs");
const files = readdirSync(fixtures).filter((f) => f.endsWith(".yaml"));

for (const file of files.filter((f) => f.startsWith("invalid-"))) {
  test(`${file} is rejected with exactly its expected problems`, () => {
    const full = path.join(fixtures, file);
    const expected = [...readFileSync(full, "utf8").matchAll(/^# expect: (.*)$/gm)].map((m) => m[1]);
    assert.ok(expected.length > 0, `${file} declares no "# expect:" line`);
    const result = loadLab(full);
    assert.equal(result.ok, false);
    const lines = result.ok ? [] : result.problems.map((p) => `${p.path}: ${p.reason}`);
    for (const want of expected) {
      assert.ok(
        lines.some((l) => l.startsWith(want)),
        `missing "${want}" in:\n${lines.join("\n")}`,
      );
    }
    assert.equal(lines.length, expected.length, `unexpected extra problems:\n${lines.join("\n")}`);
  });
}

for (const file of [...files.filter((f) => f.startsWith("valid-")), "../../../labs/two-node.yaml", "../../../labs/container-two-node.yaml"]) {
  test(`${path.basename(file)} is valid`, () => {
    const result = loadLab(path.join(fixtures, file));
    assert.deepEqual(result.ok ? [] : result.problems, []);
  });
}

test("the reference lab derives what DESIGN.md says", () => {
  const result = loadLab(path.join(import.meta.dirname, "../labs/two-node.yaml"));
  assert.ok(result.ok);
  const { lab } = result;
  assert.equal(lab.netns, "k8slab-two-node");
  assert.deepEqual(
    lab.nodes.map((n) => [n.name, n.address, n.podSubnet, n.isControlPlane, n.isWorker]),
    [
      ["node1", "192.168.0.21", "172.30.1.0/24", true, true],
      ["node2", "192.168.0.22", "172.30.2.0/24", false, true],
    ],
  );
  assert.equal(lab.controlPlane.name, "node1");
  assert.equal(lab.services.kubernetesServiceIP, "10.254.0.1");
  assert.equal(lab.services.dnsIP, "10.254.0.2");
  assert.equal(lab.pods.mtu, 1450);
  assert.deepEqual(lab.pods.flannel, { backend: "vxlan", vni: 1, port: 8472, device: "flannel.1" });
  assert.equal(lab.pods.bridge, "cni0");
  assert.equal(lab.services.kubeProxyMode, "iptables");
  assert.equal(lab.ingress.hostNetwork, true);
  assert.equal(lab.workloads.businessManager.replicas, 3);
  assert.ok(Object.isFrozen(lab.nodes[0]), "the lab is frozen");
});

test("defaults fill what a minimal lab leaves out", () => {
  const result = loadLab(path.join(fixtures, "valid-minimal.yaml"));
  assert.ok(result.ok);
  const { lab } = result;
  assert.deepEqual(lab.driver, { kind: "qemu", sshPortBase: 2221, apiServerPort: 16443 });
  assert.equal(lab.nodes[1].memoryMiB, 2048);
  assert.equal(lab.pods.flannel.vni, 1);
  assert.equal(lab.services.clusterDomain, "cluster.local");
  assert.equal(lab.workloads.dataProduct.name, "data-product");
});

test("the container driver takes the qemu driver's fields and defaults, and owns its machines", () => {
  const result = loadLab(path.join(fixtures, "valid-container-driver.yaml"));
  assert.ok(result.ok);
  const { lab } = result;
  assert.deepEqual(lab.driver, { kind: "container", sshPortBase: 2221, apiServerPort: 16443 });
  assert.equal(lab.nodes[0].memoryMiB, 1024);
  assert.equal(lab.nodes[0].cpus, 1);
  assert.equal(ownsMachines(lab), true);
  const ssh = loadLab(path.join(fixtures, "valid-ssh-driver.yaml"));
  assert.ok(ssh.ok);
  assert.equal(ownsMachines(ssh.lab), false);
});

test("the container reference lab runs beside the VM lab: its own name, namespace and ports", () => {
  const [vm, ct] = ["two-node.yaml", "container-two-node.yaml"].map((f) => loadLab(path.join(import.meta.dirname, "../labs", f)));
  assert.ok(vm.ok && ct.ok);
  assert.equal(ct.lab.driver.kind, "container");
  assert.notEqual(ct.lab.netns, vm.lab.netns);
  if (ct.lab.driver.kind !== "container" || vm.lab.driver.kind !== "qemu") throw new Error("drivers");
  assert.deepEqual([ct.lab.driver.sshPortBase, ct.lab.driver.apiServerPort], [2241, 16453]);
  assert.notEqual(ct.lab.driver.sshPortBase, vm.lab.driver.sshPortBase);
});

test("ssh driver keys resolve relative to the lab file", () => {
  const result = loadLab(path.join(fixtures, "valid-ssh-driver.yaml"));
  assert.ok(result.ok);
  assert.equal(result.lab.nodes[0].ssh?.keyFile, path.join(fixtures, "keys/id_ed25519"));
  assert.equal(result.lab.nodes[1].ssh?.port, 2222);
  assert.equal(result.lab.nodes[0].ssh?.port, 22);
  assert.equal(result.lab.pods.mtu, 8950);
});

test("a control-plane-only node is no worker, and flannel's device follows the VNI", () => {
  const result = loadLab(path.join(fixtures, "valid-control-plane-only-vni-2.yaml"));
  assert.ok(result.ok);
  assert.deepEqual(
    result.lab.nodes.map((n) => [n.name, n.isControlPlane, n.isWorker]),
    [
      ["node1", true, false],
      ["node2", false, true],
    ],
  );
  assert.equal(result.lab.pods.flannel.device, "flannel.2");
});

test("a missing file is one problem naming the file", () => {
  const result = loadLab("/nonexistent/lab.yaml");
  assert.deepEqual(result.ok ? [] : result.problems, [{ path: "/nonexistent/lab.yaml", reason: "no such file" }]);
});

test("hostile input is one problem, never a hang, a stack trace or a pass", (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "k8slab-hostile-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const at = (name: string) => path.join(dir, name);
  writeFileSync(at("huge.yaml"), `# ${"x".repeat(2 * 1024 * 1024)}\n`);
  writeFileSync(at("binary.yaml"), Buffer.from([0x6e, 0x61, 0x6d, 0x65, 0x3a, 0x00, 0xff]));
  writeFileSync(at("latin1.yaml"), Buffer.from("name: caf\xe9\n", "latin1"));
  writeFileSync(at("deep.yaml"), `name: ${"[".repeat(50000)}`);
  writeFileSync(at("list.yaml"), "- name: a\n");
  mkdirSync(at("folder.yaml"));
  execFileSync("mkfifo", [at("fifo.yaml")]);
  symlinkSync(at("loop-b.yaml"), at("loop-a.yaml"));
  symlinkSync(at("loop-a.yaml"), at("loop-b.yaml"));
  const problems = (file: string) => {
    const r = loadLab(file);
    return r.ok ? ["(valid)"] : r.problems.map((p) => `${p.path}: ${p.reason}`);
  };
  assert.deepEqual(problems(at("huge.yaml")), [`${at("huge.yaml")}: is 2097155 bytes: a lab file is at most 1048576 bytes`]);
  assert.deepEqual(problems(at("binary.yaml")), [`${at("binary.yaml")}: is binary (it holds NUL bytes): a lab file is YAML text`]);
  assert.deepEqual(problems(at("latin1.yaml")), [`${at("latin1.yaml")}: is not UTF-8 text`]);
  assert.deepEqual(problems(at("deep.yaml")), ["deep.yaml: is nested too deeply to be a lab file"]);
  assert.deepEqual(problems(at("list.yaml")), ["(lab): must be an object, not a list"]);
  assert.deepEqual(problems(at("folder.yaml")), [`${at("folder.yaml")}: is a directory, not a lab file`]);
  assert.deepEqual(problems(at("fifo.yaml")), [`${at("fifo.yaml")}: is not a regular file (a FIFO, socket or device): a lab file is a YAML file`]);
  assert.deepEqual(problems("/dev/zero"), ["/dev/zero: is not a regular file (a FIFO, socket or device): a lab file is a YAML file"]);
  assert.deepEqual(problems(at("loop-a.yaml")), [`${at("loop-a.yaml")}: is a symlink loop`]);
});

test("an empty document reports the required sections", () => {
  const result = parseLab("", "/tmp/empty.yaml");
  const paths = result.ok ? [] : result.problems.map((p) => p.path);
  assert.deepEqual(paths.sort(), ["ingress", "lan", "name", "nodes", "pods", "services", "workloads"]);
});

test("node subnets must have room for every node", () => {
  const text = readFileSync(path.join(fixtures, "valid-minimal.yaml"), "utf8").replace(
    "flannel: {backend: vxlan}",
    "nodeSubnetPrefix: 17\n  flannel: {backend: vxlan}",
  );
  const result = parseLab(text, "/tmp/tight.yaml");
  assert.deepEqual(result.ok ? [] : result.problems, [
    { path: "pods.nodeSubnetPrefix", reason: "/17 subnets of 172.30.0.0/16 leave room for 0 nodes, the lab has 2" },
  ]);
});

// The k8slab command as a user runs it: exit codes and messages of the contract in DESIGN.md.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";

const root = path.join(import.meta.dirname, "..");
const bin = path.join(root, "scripts/bin/k8slab.mjs");

function k8slab(...args: string[]) {
  // process.execPath is the project's Node (npm test puts node_modules/.bin first on PATH).
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: "utf8", timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test("validate accepts the reference lab", () => {
  const r = k8slab("validate", "labs/two-node.yaml");
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /valid lab "two-node", 2 nodes/);
});

test("validate exits 2 with one `path: reason` line per problem", () => {
  const r = k8slab("validate", "test/fixtures/labs/invalid-several-problems.yaml");
  assert.equal(r.code, 2);
  const lines = r.err.trim().split("\n");
  assert.equal(lines.length, 2, r.err);
  assert.match(lines[0], /^name: must be a lowercase RFC 1123 label/);
  assert.match(lines[1], /^ingress\.service: "frontend" is not a workload Service/);
});

test("validate names a missing file", () => {
  const r = k8slab("validate", "labs/nope.yaml");
  assert.equal(r.code, 2);
  assert.equal(r.err.trim(), "labs/nope.yaml: no such file");
});

test("validate without a file is a usage error", () => {
  const r = k8slab("validate");
  assert.equal(r.code, 2);
  assert.match(r.err, /usage: k8slab validate LAB/);
});

test("--help lists every command of the contract", () => {
  const r = k8slab("--help");
  assert.equal(r.code, 0);
  for (const c of ["up", "probe", "down", "status", "validate", "toolchain"]) assert.match(r.out, new RegExp(`^  ${c}\\b`, "m"));
  assert.match(k8slab("probe", "--help").out, /--junit FILE/);
});

test("unknown commands and options are usage errors", () => {
  assert.equal(k8slab("frobnicate").code, 2);
  const r = k8slab("status", "--frobnicate");
  assert.equal(r.code, 2);
  assert.match(r.err, /Unknown option '--frobnicate'/);
});

test("probe rejects an unknown tier with exit 2 and lists the tiers", () => {
  const r = k8slab("probe", "--tier", "dns", "--tier", "nosuch");
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown tier "nosuch"; tiers: underlay, flannel, pod-same-node, pod-cross-node, service, dns, nodeport, ingress, business-flow/);
});

test("probe of a lab that is not up: underlay fails on ssh, the rest is blocked, exit 1; --junit writes the report", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "k8slab-cli-"));
  const junit = path.join(dir, "probe.xml");
  const r = k8slab("probe", "test/fixtures/labs/valid-minimal.yaml", "--json", "--junit", junit);
  const xml = readFileSync(junit, "utf8");
  rmSync(dir, { recursive: true });
  assert.equal(r.code, 1, r.err);
  const report = JSON.parse(r.out);
  assert.equal(report.lab, "mini");
  assert.match(report.results[0].firstBrokenHop, /^ssh to node\d: .*no ssh endpoint/);
  assert.ok(report.results.slice(1).every((t: { verdict: string; blockedBy: string }) => t.verdict === "blocked" && t.blockedBy === "underlay"));
  assert.match(xml, /<testsuites name="k8slab probe" tests="9" failures="1" errors="0" skipped="8"/);
});

test("a command that fails unexpectedly says why in one line, exit 1; the stack trace only with --debug", () => {
  const args = ["probe", "test/fixtures/labs/valid-minimal.yaml", "--tier", "underlay", "--junit", "/nonexistent-k8slab-dir/probe.xml"];
  const r = k8slab(...args);
  assert.equal(r.code, 1);
  assert.match(
    r.err,
    /^k8slab probe: ENOENT: no such file or directory, open '\/nonexistent-k8slab-dir\/probe\.xml'\n\(run with --debug for the stack trace\)$/m,
  );
  assert.doesNotMatch(r.err, /^\s+at /m, "no stack trace");
  const debug = k8slab(...args, "--debug");
  assert.equal(debug.code, 1);
  assert.match(debug.err, /^\s+at /m, "--debug shows it");
});

test("validate refuses what is not a lab file at once, exit 2: a FIFO, a device", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "k8slab-cli-"));
  const fifo = path.join(dir, "lab.yaml");
  spawnSync("mkfifo", [fifo]);
  const r = k8slab("validate", fifo);
  const dev = k8slab("validate", "/dev/zero");
  rmSync(dir, { recursive: true });
  assert.deepEqual([r.code, r.err], [2, `${fifo}: is not a regular file (a FIFO, socket or device): a lab file is a YAML file\n`]);
  assert.deepEqual([dev.code, dev.err], [2, "/dev/zero: is not a regular file (a FIFO, socket or device): a lab file is a YAML file\n"]);
});

test("status --json of a lab that was never brought up", () => {
  const r = k8slab("status", "test/fixtures/labs/valid-minimal.yaml", "--json");
  assert.equal(r.code, 0, r.err);
  const status = JSON.parse(r.out);
  assert.equal(status.netns, "k8slab-mini");
  assert.equal(status.netnsExists, false);
  assert.deepEqual(
    status.nodes.map((n: { name: string; address: string; running: boolean }) => [n.name, n.address, n.running]),
    [
      ["node1", "192.168.0.21", false],
      ["node2", "192.168.0.22", false],
    ],
  );
  assert.equal(status.kubeconfig, null);
});

test("commands that take a lab reject an invalid one with exit 2 before doing anything", () => {
  for (const c of ["up", "down", "status"]) {
    const r = k8slab(c, "test/fixtures/labs/invalid-hostgw-port.yaml");
    assert.equal(r.code, 2, c);
    assert.match(r.err, /^pods\.flannel\.port: host-gw does not encapsulate/m);
  }
});

test("toolchain --env prints the exports that run the bundled pulumi offline, with the k8slab plugin on PATH", () => {
  const r = k8slab("toolchain", "--env");
  assert.equal(r.code, 0, r.err);
  const env = Object.fromEntries([...r.out.matchAll(/^export (\w+)=('?)(.*)\2$/gm)].map((m) => [m[1], m[3]]));
  assert.equal(env.PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION, "true");
  assert.match(env.PULUMI_HOME, /bundle-v1\/pulumi\/home$/);
  assert.match(env.PATH.split(":")[1], /infra\/provider\/bin$/);
  assert.match(env.PULUMI_BACKEND_URL, /^file:\/\//);
  assert.equal(env.PULUMI_CONFIG_PASSPHRASE, undefined, "no secret is printed");
  assert.match(r.out, /^# a lab's stack also needs: export PULUMI_CONFIG_PASSPHRASE_FILE=\S+\/labs\/LAB\/pulumi-passphrase/m);
});

test("up or down of a lab another k8slab is changing stops at once with exit 2, naming the holder", async (t) => {
  const run = mkdtempSync(path.join(tmpdir(), "k8slab-run-"));
  t.after(() => rmSync(run, { recursive: true, force: true }));
  const lockfile = (await import("proper-lockfile")).default;
  const release = await lockfile.lock(path.join(run, "mini.lifecycle"), { realpath: false });
  writeFileSync(path.join(run, "mini.lifecycle.holder"), "`k8slab up` pid 4242 since 2026-11-30T05:00:00.000Z\n");
  try {
    const r = spawnSync(process.execPath, [bin, "down", "test/fixtures/labs/valid-minimal.yaml"], {
      cwd: root,
      encoding: "utf8",
      timeout: 30_000,
      env: { ...process.env, K8SLAB_RUN: run },
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(
      r.stderr,
      /^k8slab down: lab mini is being changed right now \(`k8slab up` pid 4242 since 2026-11-30T05:00:00\.000Z\); wait for it to finish, or stop it$/m,
    );
  } finally {
    await release();
  }
});

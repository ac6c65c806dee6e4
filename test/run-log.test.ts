import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import type { EngineEvent } from "@pulumi/pulumi/automation/index.js";
import { apiServerTooSlow, failureLines, pulumiErrorLine, pulumiFailures, resourceOfUrn, runLogFile, teeOutput } from "../scripts/run-log.ts";

const urn = "urn:pulumi:two-node::k8slab::k8slab:tier:Etcd$k8slab:index:Command::etcd-node1";
const diag = (severity: "error" | "info" | "info#err", message: string, u?: string) =>
  ({ sequence: 0, timestamp: 0, diagnosticEvent: { severity, message, color: "never", urn: u } }) as EngineEvent;

test("a URN reads as its type and name", () => {
  assert.equal(resourceOfUrn(urn), "k8slab:index:Command etcd-node1");
  assert.equal(resourceOfUrn("urn:pulumi:s::p::pulumi:pulumi:Stack::k8slab-s"), "pulumi:pulumi:Stack k8slab-s");
});

test("only error diagnostics count, each once, by resource; the engine's own under `pulumi`", () => {
  const p = pulumiFailures();
  p.onEvent(diag("info#err", "plugin chatter", urn));
  p.onEvent(diag("error", "create on root@127.0.0.1:2222 exited 1: systemctl start etcd\nJob failed\n", urn));
  p.onEvent(diag("error", "create on root@127.0.0.1:2222 exited 1: systemctl start etcd\nJob failed\n", urn));
  p.onEvent(diag("error", "error reading from server: read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer"));
  assert.deepEqual(p.failures(), [
    { resource: "k8slab:index:Command etcd-node1", error: "create on root@127.0.0.1:2222 exited 1: systemctl start etcd\nJob failed" },
    { resource: "pulumi", error: "error reading from server: read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer" },
  ]);
  const lines = failureLines(p.failures());
  assert.match(lines[0], /^ {2}failed: k8slab:index:Command etcd-node1: create on .* exited 1/);
  assert.match(lines[1], /^ {2}failed: pulumi: error reading from server: .* connection reset by peer$/);
  assert.equal(lines.length, 2);
});

test("a failed run's line: its resources counted, else the engine's last error line", () => {
  const err = Object.assign(new Error("code: 255\n stdout: lots\n stderr: ..."), {
    commandResult: { stderr: "warning: x\nerror: update failed\nerror: error reading from server: EOF\n" },
  });
  assert.equal(pulumiErrorLine(err, []), "error: error reading from server: EOF");
  assert.equal(
    pulumiErrorLine(err, [
      { resource: "a b", error: "e" },
      { resource: "pulumi", error: "f" },
    ]),
    "1 resource failed (below)",
  );
});

test("teeOutput keeps what stdout and stderr showed, and what is written to it alone, until closed", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-runlog-"));
  try {
    const file = runLogFile(dir, "up", new Date("2026-12-07T18:00:00.000Z"));
    assert.equal(path.basename(file), "up-2026-12-07T18-00-00-000Z.log");
    const log = teeOutput(file);
    process.stderr.write("• step ...\n");
    log.write("plugin stderr\n");
    log.close();
    process.stderr.write("after close\n");
    assert.equal(fs.readFileSync(file, "utf8"), "• step ...\nplugin stderr\n");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("resources failed with the same error are one line, named by count and the first few", () => {
  const same = "failed to read resource state due to unreachable cluster";
  const failures = ["a", "b", "c", "d"].map((n) => ({ resource: `kubernetes:core/v1:Service ${n}`, error: same }));
  const lines = failureLines([...failures, { resource: "pulumi", error: "update failed" }]);
  assert.deepEqual(lines, [
    `  failed: 4 resources (kubernetes:core/v1:Service a, kubernetes:core/v1:Service b, kubernetes:core/v1:Service c, ...): ${same}`,
    "  failed: pulumi: update failed",
  ]);
});

test("a slow API server is told from a failed object: only when every failure is a cluster object found unreachable", () => {
  const unreachable = { resource: "kubernetes:apps/v1:Deployment coredns", error: "failed to read resource state due to unreachable cluster. If ..." };
  assert.equal(apiServerTooSlow([unreachable, { resource: "pulumi", error: "update failed" }]), true);
  // Its first object, before any refresh: the OpenAPI document did not come within the provider's 32 s.
  const firstObject = {
    resource: "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding cluster-admins",
    error:
      'configured Kubernetes cluster is unreachable: unable to load schema information from the API server: Get "https://127.0.0.1:16443/openapi/v2?timeout=32s": net/http: request canceled (Client.Timeout exceeded while awaiting headers)',
  };
  assert.equal(apiServerTooSlow([firstObject, { resource: "pulumi", error: "update failed" }]), true);
  assert.equal(apiServerTooSlow([unreachable, { resource: "k8slab:index:Command etcd-node1", error: "exited 1" }]), false);
  assert.equal(apiServerTooSlow([{ resource: "kubernetes:core/v1:Service x", error: "Service is invalid" }]), false);
  assert.equal(apiServerTooSlow([]), false);
});

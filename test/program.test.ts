// The Pulumi program's tier graph under mocks: names, type tokens, parents and order.
import { after, test } from "node:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import assert from "node:assert/strict";
import path from "node:path";
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { promisify } from "node:util";
import * as pulumi from "@pulumi/pulumi";

const root = path.join(import.meta.dirname, "..");
const run = promisify(execFile);

/** A private key file standing in for the lab key the machine layer would generate. */
const keyDir = mkdtempSync(path.join(tmpdir(), "k8slab-program-test-"));
const keyFile = path.join(keyDir, "id_ed25519");
writeFileSync(keyFile, "PRIVATE KEY FOR TESTS\n");
after(() => rmSync(keyDir, { recursive: true, force: true }));

/** Machine-layer commands that ran, by resource name; they are recorded, never run (they would start VMs). */
const machineCommands = new Map<string, { create: string; delete?: string; environment?: Record<string, string> }>();

/**
 * The PKI generator really runs, as the provider would run it from the project root. Machine-layer
 * commands are answered the way scripts/machines/cli.ts answers them.
 */
async function runLocalCommand(name: string, inputs: { create: string; delete?: string; environment?: Record<string, string> }) {
  if (inputs.create.includes("scripts/machines/")) {
    machineCommands.set(name, inputs);
    const spec = JSON.parse(inputs.environment?.K8SLAB_SPEC ?? "{}");
    const stdout = inputs.create.endsWith("vm-up") ? JSON.stringify({ name: spec.name, ssh: { host: "127.0.0.1", port: spec.sshPort, user: "root", keyFile } }) : "{}";
    return { ...inputs, stdout, stderr: "" };
  }
  const { stdout } = await run("/bin/sh", ["-c", inputs.create], { cwd: root, env: { ...process.env, ...inputs.environment } });
  return { ...inputs, stdout, stderr: "" };
}

/** The mock monitor passes secret inputs in Pulumi's wire envelope; a provider would see plain values. */
const SECRET_SIG = "4dabf18193072939515e22adb298388d";
function unwrapSecrets(v: any): any {
  if (Array.isArray(v)) return v.map(unwrapSecrets);
  if (v && typeof v === "object") {
    if (v[SECRET_SIG] === "1b47061264138c4ac30d75fd1eb44270") return unwrapSecrets(v.value);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x)]));
  }
  return v;
}

// Mocks must be in place before the program's modules create resources.
await pulumi.runtime.setMocks(
  {
    newResource: async (args) => {
      const state = args.type === "command:local:Command" ? await runLocalCommand(args.name, unwrapSecrets(args.inputs)) : args.inputs;
      return { id: `${args.name}-id`, state };
    },
    call: (args) => args.inputs,
  },
  "k8slab",
  "test",
  false,
);

const { loadLab } = await import("../infra/lab/index.js");
const { buildLab, TIER_ORDER } = await import("../infra/program.js");

const loaded = loadLab(path.join(import.meta.dirname, "../labs/two-node.yaml"));
assert.ok(loaded.ok);
const tiers = buildLab(loaded.lab);

const urnOf = (r: pulumi.Resource) => new Promise<string>((resolve) => r.urn.apply(resolve));

test("one tier per DESIGN.md tier, in order, with k8slab:tier type tokens", async () => {
  const expected = [
    ["machines", "Machines"],
    ["pki", "Pki"],
    ["etcd", "Etcd"],
    ["control-plane", "ControlPlane"],
    ["node-agents", "NodeAgents"],
    ["flannel", "Flannel"],
    ["kube-proxy", "KubeProxy"],
    ["coredns", "CoreDns"],
    ["ingress", "Ingress"],
    ["workloads", "Workloads"],
  ];
  assert.deepEqual(TIER_ORDER.map(([name]) => name), expected.map(([name]) => name));
  const urns = await Promise.all(tiers.map(urnOf));
  // A top-level component's URN: urn:pulumi:STACK::PROJECT::TYPE::NAME (no parent type before it).
  assert.deepEqual(
    urns.map((u) => u.split("::").slice(2).join("::")),
    expected.map(([name, kind]) => `k8slab:tier:${kind}::${name}`),
  );
});

test("each tier builds on the one below it", () => {
  assert.equal(tiers[0].after, undefined);
  for (let i = 1; i < tiers.length; i++) assert.equal(tiers[i].after, tiers[i - 1], `tier ${i} after tier ${i - 1}`);
});

/** Resolves an Output in a test (mocks resolve everything). */
const valueOf = <T>(o: pulumi.Output<T>) => new Promise<T>((resolve) => o.apply(resolve));
/** The SDK records a component's children on it; not in its typings. */
const childrenOf = (r: pulumi.Resource) => [...((r as unknown as { __childResources?: Set<pulumi.Resource> }).__childResources ?? [])];

test("pki: every certificate is signed by the lab CA, keys are secrets, all parented to the tier", async () => {
  const pki = tiers[TIER_ORDER.findIndex(([name]) => name === "pki")] as import("../infra/tiers/pki.js").Pki;
  const ca = new X509Certificate(await valueOf(pki.caCertPem));
  assert.match(ca.subject, /CN=k8slab two-node CA/);
  const names = Object.keys(pki.certs);
  assert.ok(names.includes("kubelet-node2") && names.includes("admin"));
  for (const [name, issued] of Object.entries(pki.certs)) {
    const cert = new X509Certificate(await valueOf(issued.certPem));
    assert.ok(cert.verify(ca.publicKey), `${name} is signed by the lab CA`);
    assert.ok(cert.subject.startsWith(`CN=${issued.spec.commonName}`), name);
    assert.equal(await pulumi.isSecret(issued.keyPem), true, `${name}'s key is a secret`);
  }
  assert.equal(await pulumi.isSecret(pki.serviceAccount.privateKeyPem), true);
  const children = childrenOf(pki);
  assert.equal(children.length, names.length + 2, "CA + certificates + service-account key");
  for (const child of children) assert.match(await valueOf(child.urn), /::k8slab:tier:Pki\$command:local:Command::/);
});

test("machines: one VM per node on the lab LAN, reachable through loopback forwards", async () => {
  const machines = tiers[0] as import("../infra/tiers/machines.js").Machines;
  assert.equal(machines.apiServerEndpoint, "127.0.0.1:16443");
  const lan = machineCommands.get("lan")!;
  assert.match(lan.create, /net-up$/);
  assert.equal(lan.delete, "node_modules/.bin/tsx scripts/machines/cli.ts down two-node");
  assert.deepEqual(JSON.parse(lan.environment!.K8SLAB_SPEC), { lab: "two-node", netns: "k8slab-two-node", bridge: "lan0", gatewayCidr: "192.168.0.1/24" });
  const specs = ["node1", "node2"].map((n) => JSON.parse(machineCommands.get(`vm-${n}`)!.environment!.K8SLAB_SPEC));
  assert.deepEqual(specs.map((s) => [s.name, s.address, s.sshPort, s.memoryMiB]), [["node1", "192.168.0.21", 2221, 3072], ["node2", "192.168.0.22", 2222, 2048]]);
  assert.deepEqual(specs[0].extraForwards, [{ host: 16443, guest: 6443 }], "the API server is forwarded from the control plane only");
  assert.deepEqual(specs[1].extraForwards, []);
  assert.match(machineCommands.get("vm-node2")!.delete!, /"name":"node2".*vm-down$/);
  const node2 = machines.connections.node2;
  const conn = await valueOf(node2);
  assert.deepEqual([conn.host, conn.port, conn.user], ["127.0.0.1", 2222, "root"]);
  assert.equal(conn.privateKey, "PRIVATE KEY FOR TESTS\n");
  assert.equal(await pulumi.isSecret(node2), true, "the connection carries the private key as a secret");
});

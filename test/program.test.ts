// The Pulumi program's tier graph under mocks: names, type tokens, parents and order.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { promisify } from "node:util";
import * as pulumi from "@pulumi/pulumi";

const root = path.join(import.meta.dirname, "..");
const run = promisify(execFile);

/** Local commands really run (the PKI generator), as the provider would run them from the project root. */
async function runLocalCommand(inputs: { create: string; environment?: Record<string, string> }) {
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
      const state = args.type === "command:local:Command" ? await runLocalCommand(unwrapSecrets(args.inputs)) : args.inputs;
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

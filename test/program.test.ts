// The Pulumi program's tier graph under mocks: names, type tokens, parents and order.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";

// Mocks must be in place before the program's modules create resources.
const registered: { type: string; name: string; custom: boolean }[] = [];
await pulumi.runtime.setMocks(
  {
    newResource: (args) => {
      registered.push({ type: args.type, name: args.name, custom: !!args.custom });
      return { id: `${args.name}-id`, state: args.inputs };
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

test("the mock engine saw the tiers registered bottom-up", () => {
  const tierRegistrations = registered.filter((r) => r.type.startsWith("k8slab:tier:")).map((r) => r.name);
  assert.deepEqual(tierRegistrations, TIER_ORDER.map(([name]) => name));
});

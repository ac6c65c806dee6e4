// The workshop catalog: every scenario file valid for the reference lab, every probe tier covered,
// and the commands' bad input refused without changing anything.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { loadLab } from "../scripts/lab-file.ts";
import { TIER_IDS } from "../scripts/probes/contract.ts";
import { expand, forLab, labVars, loadCatalog, nodesNeeded } from "../scripts/scenarios/catalog.ts";

const root = path.join(import.meta.dirname, "..");
const loaded = loadLab(path.join(root, "labs/two-node.yaml"));
const lab = loaded.ok ? loaded.lab : assert.fail();

test("every scenario file is valid for the reference lab; together they break every probe tier", () => {
  const { scenarios, problems } = loadCatalog(lab);
  assert.deepEqual(problems, []);
  assert.ok(scenarios.length >= 16, `${scenarios.length} scenarios`);
  assert.equal(new Set(scenarios.map((s) => s.id)).size, scenarios.length, "ids are unique");
  assert.deepEqual([...new Set(scenarios.map((s) => s.verdict.tier))].sort(), [...TIER_IDS].sort());
  for (const s of scenarios) {
    const written = forLab(s, lab);
    assert.doesNotMatch(JSON.stringify(written), /\{\{/, `${s.id}: every variable expanded`);
    assert.ok(nodesNeeded(s) <= lab.nodes.length, `${s.id} fits the reference lab`);
    assert.ok(s.undo.length > 0 && s.hints.length >= 2, s.id);
  }
});

test("a scenario file that is wrong is refused with its file and field", (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-scenarios-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const good = fs.readFileSync(path.join(root, "scenarios/route-missing.yaml"), "utf8");
  fs.writeFileSync(path.join(dir, "route-missing.yaml"), good.replace("tier: flannel", "tier: flanel"));
  fs.writeFileSync(path.join(dir, "other-name.yaml"), good.replace("{{node1Subnet}} dev", "{{nodeSubnet}} dev"));
  const { problems } = loadCatalog(lab, dir);
  const lines = problems.map((p) => `${path.basename(p.file)}: ${p.path}: ${p.reason}`);
  assert.ok(
    lines.some((l) => /^route-missing\.yaml: verdict\.tier: /.test(l)),
    lines.join("\n"),
  );
  assert.ok(lines.includes('other-name.yaml: id: "route-missing" differs from the file name'), lines.join("\n"));
  assert.ok(lines.includes("other-name.yaml: apply: {{nodeSubnet}} is not a lab variable"), lines.join("\n"));
});

test("variables are the lab's own values", () => {
  const v = labVars(lab);
  assert.equal(expand("{{vxlanPort}} {{flannelDevice}} {{node1Gateway}} {{node1LeaseKey}}", v), "8472 flannel.1 172.30.2.0 172.30.2.0-24");
  assert.throws(() => expand("{{nope}}", v), /\{\{nope\}\} is not defined/);
});

test("break, hint and fix refuse bad input with exit 2 and change nothing", (t) => {
  const state = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-state-"));
  t.after(() => fs.rmSync(state, { recursive: true, force: true }));
  const k8slab = (...args: string[]) =>
    spawnSync(process.execPath, [path.join(root, "scripts/bin/k8slab.mjs"), ...args], {
      cwd: root,
      encoding: "utf8",
      timeout: 30_000,
      env: { ...process.env, K8SLAB_STATE: state },
    });
  const unknown = k8slab("break", "labs/two-node.yaml", "no-such-scenario");
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /no scenario "no-such-scenario"/);
  const notUp = k8slab("break", "labs/two-node.yaml", "route-missing");
  assert.equal(notUp.status, 2);
  assert.match(notUp.stderr, /lab two-node is not up/);
  assert.equal(fs.existsSync(path.join(state, "labs/two-node/scenario.json")), false, "nothing recorded");
  const hint = k8slab("hint", "labs/two-node.yaml");
  assert.equal(hint.status, 2);
  assert.match(hint.stderr, /has no scenario applied/);
  // A scenario recorded as applied: a second break is refused.
  fs.mkdirSync(path.join(state, "labs/two-node"), { recursive: true });
  fs.writeFileSync(path.join(state, "labs/two-node/scenario.json"), JSON.stringify({ id: "route-missing", hidden: true, appliedAt: "x", hintsShown: 0 }));
  const again = k8slab("break", "labs/two-node.yaml", "bridge-down");
  assert.equal(again.status, 2);
  assert.match(again.stderr, /already has a scenario applied: `npx k8slab fix labs\/two-node\.yaml` first/);
  assert.doesNotMatch(again.stderr, /route-missing/, "a hidden scenario stays hidden");
  const first = k8slab("hint", "labs/two-node.yaml");
  assert.match(first.stdout, /^Hint 1 of 2: Where does node1 send a packet for 172\.30\.2\.0\/24\?\n$/);
  assert.match(k8slab("hint", "labs/two-node.yaml").stdout, /^Hint 2 of 2: /);
  assert.match(k8slab("hint", "labs/two-node.yaml").stdout, /^No more hints/);
});

test("a one-node lab keeps the catalog: scenarios naming the second node just do not fit it", () => {
  const one = { ...lab, nodes: [lab.nodes[0]] };
  const { scenarios, problems } = loadCatalog(one);
  assert.deepEqual(problems, []);
  const fit = scenarios.filter((s) => nodesNeeded(s) <= 1).map((s) => s.id);
  assert.ok(fit.includes("coredns-down") && !fit.includes("forward-drop"), fit.join(", "));
  // A misspelt variable of a node the lab has is still a problem.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-scenarios-"));
  try {
    const text = fs.readFileSync(path.join(root, "scenarios/coredns-down.yaml"), "utf8").replace("hints:\n", "hints:\n  - see {{node0Adress}}\n");
    fs.writeFileSync(path.join(dir, "coredns-down.yaml"), text);
    assert.match(JSON.stringify(loadCatalog(one, dir).problems), /\{\{node0Adress\}\} is not a lab variable/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a hop pattern matches a lab value literally (its dots are not wildcards)", () => {
  const s = forLab(loadCatalog(lab).scenarios.find((x) => x.id === "mtu-mismatch")!, lab);
  assert.match(s.verdict.hop, /flannel\\\.1/);
  assert.ok(new RegExp(s.verdict.hop).test("node2 flannel.1: MTU 1400, not 1450"));
  assert.ok(!new RegExp(s.verdict.hop).test("node2 flannelX1: MTU 1400"));
});

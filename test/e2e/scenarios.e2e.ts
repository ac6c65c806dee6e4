// The scenario catalog on a real lab (root, the reference lab up): for each scenario, `break`, then the
// probes fail at its tier naming its hop, then `fix`, then every tier passes. Prints the table the
// issue asks for (scenario, expected tier, tier reported, hop named, seconds to apply / diagnose / undo).
// `npm run test:e2e:scenarios` (all; K8SLAB_E2E_SCENARIOS=a,b,c for some). The lab must be up; it is left up.
import "../../scripts/quiet-bash.ts";
import assert from "node:assert/strict";
import path from "node:path";
import { after, describe, it } from "node:test";
import { $ } from "zx";
import { loadLab } from "../../scripts/lab-file.ts";
import type { ProbeReport } from "../../scripts/probes/types.ts";
import { forLab, loadCatalog } from "../../scripts/scenarios/catalog.ts";
import { repoRoot } from "../../scripts/toolchain/paths.ts";

const LAB_FILE = "labs/two-node.yaml";
const loaded = loadLab(path.join(repoRoot, LAB_FILE));
assert.ok(loaded.ok);
const lab = loaded.lab;
const only = process.env.K8SLAB_E2E_SCENARIOS?.split(",").filter(Boolean);
const { scenarios } = loadCatalog(lab);
const chosen = scenarios.filter((s) => !only || only.includes(s.id)).map((s) => forLab(s, lab));
const k8slab = (...args: string[]) =>
  $({ cwd: repoRoot, nothrow: true, quiet: true })`${path.join(repoRoot, "node_modules/.bin/node")} scripts/bin/k8slab.mjs ${args}`;
const secs = (from: number) => Math.round((Date.now() - from) / 100) / 10;
const rows: string[] = [];
/** A scenario whose fix failed leaves the lab broken (and its record in place): the rest would only fail on it. */
let unhealed: string | undefined;

/** The first broken hop's name (firstBrokenHop is "name: detail"; a name may hold a colon, as node1:30080 does). */
const hopName = (r: ProbeReport["results"][number]) => r.hops.find((h) => !h.ok)?.name ?? r.firstBrokenHop ?? "-";

describe("the scenario catalog on the reference lab", { skip: process.getuid?.() === 0 ? false : "needs root (the lab's VMs)" }, () => {
  after(() => {
    process.stderr.write(
      `\n| scenario | expected tier | tier reported | hop named | apply s | diagnose s | undo s |\n| --- | --- | --- | --- | --- | --- | --- |\n${rows.join("\n")}\n`,
    );
  });

  for (const s of chosen) {
    it(`${s.id}: the probes fail at ${s.verdict.tier} naming /${s.verdict.hop}/, and fix heals the lab`, { timeout: 20 * 60_000 }, async (t0) => {
      if (unhealed) return t0.skip(`the lab is still broken by ${unhealed}`);
      let t = Date.now();
      const broke = await k8slab("break", LAB_FILE, s.id);
      const apply = secs(t);
      t = Date.now();
      const probe = await k8slab("probe", LAB_FILE, "--json");
      const diagnose = secs(t);
      let report: ProbeReport | undefined;
      try {
        report = JSON.parse(probe.stdout) as ProbeReport;
      } catch {
        report = undefined;
      }
      const failing = report?.results.find((r) => r.verdict === "fail" || r.verdict === "inconclusive");
      t = Date.now();
      const fixed = await k8slab("fix", LAB_FILE);
      const undo = secs(t);
      if (fixed.exitCode !== 0) unhealed = s.id;
      rows.push(
        `| ${s.id} | ${s.verdict.tier} | ${failing?.tier ?? "none"} | ${failing?.firstBrokenHop ? hopName(failing) : "-"} | ${apply} | ${diagnose} | ${undo} |`,
      );
      assert.equal(broke.exitCode, 0, broke.stderr);
      assert.equal(probe.exitCode, 1, "the probes find the fault");
      assert.equal(failing?.tier, s.verdict.tier, `failing tier (first broken hop: ${failing?.firstBrokenHop})`);
      assert.match(failing?.firstBrokenHop ?? "", new RegExp(s.verdict.hop));
      assert.equal(fixed.exitCode, 0, `fix: ${fixed.stderr.split("\n").slice(-5).join("\n")}`);
    });
  }
});

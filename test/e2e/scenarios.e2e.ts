// The scenario catalog on a real lab (root, the reference lab up): for each scenario, `break`, then the
// probes fail at its tier naming its hop, then `fix`, then every tier passes. Prints the table the
// issue asks for (scenario, expected tier, tier reported, hop named, seconds to apply / diagnose / undo).
// `npm run test:e2e:scenarios` (all; K8SLAB_E2E_SCENARIOS=a,b,c for some). It runs on the tests' own
// reference lab (e2e-two-node): one that is up is used and left up; one it brings up goes down after
// (unless K8SLAB_E2E_KEEP=1).
import "../../scripts/quiet-bash.ts";
import { after, describe, it } from "node:test";
import { forLab, loadCatalog } from "../../scripts/scenarios/catalog.ts";
import { lab, referenceLabForSuite, SCENARIO_TABLE_HEAD, tryScenario } from "./reference-lab.ts";

const only = process.env.K8SLAB_E2E_SCENARIOS?.split(",").filter(Boolean);
const chosen = loadCatalog(lab)
  .scenarios.filter((s) => !only || only.includes(s.id))
  .map((s) => forLab(s, lab));
const rows: string[] = [];
/** A scenario whose fix failed leaves the lab broken (and its record in place): the rest would only fail on it. */
let unhealed: string | undefined;

describe("the scenario catalog on the reference lab", { skip: process.getuid?.() === 0 ? false : "needs root (the lab's VMs)" }, () => {
  const reference = referenceLabForSuite();
  after(async () => {
    process.stderr.write(`\n${SCENARIO_TABLE_HEAD}\n${rows.join("\n")}\n`);
    await reference.downIfBroughtUp();
  });

  for (const s of chosen) {
    it(`${s.id}: the probes fail at ${s.verdict.tier} naming /${s.verdict.hop}/, and fix heals the lab`, { timeout: 20 * 60_000 }, async (t) => {
      if (unhealed) return t.skip(`the lab is still broken by ${unhealed}`);
      const tried = await tryScenario(s);
      rows.push(tried.row);
      if (!tried.healed) unhealed = s.id;
      tried.check();
    });
  }
});

// Each workshop scenario's hop pattern against the probes' own output: it matches the hop the scenario
// breaks (the probe run on that fault's recordings, scenario-faults.ts), by that hop's exact name, and
// matches no hop of a healthy run of the same tier, so a scenario cannot pass on the wrong hop.
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { loadLab } from "../scripts/lab-file.ts";
import type { TierId } from "../scripts/probes/contract.ts";
import { runProbes } from "../scripts/probes/runner.ts";
import type { TierResult } from "../scripts/probes/types.ts";
import { forLab, loadCatalog } from "../scripts/scenarios/catalog.ts";
import { type Recording, replay } from "./fixtures/probes/replay.ts";
import { SCENARIO_FAULTS } from "./fixtures/probes/scenario-faults.ts";
import { healthy, withFault } from "./fixtures/probes/scenarios.ts";

const loaded = loadLab(path.join(import.meta.dirname, "../labs/two-node.yaml"));
const lab = loaded.ok ? loaded.lab : assert.fail();
const { scenarios } = loadCatalog(lab);

async function tierOn(recordings: Recording[], tier: TierId): Promise<TierResult> {
  const access = replay(recordings);
  const report = await runProbes(lab, access, { tiers: [tier] });
  assert.deepEqual(access.unmatched, [], "every command the probes ran has a recording");
  return report.results[0];
}

test("every scenario has its fault's recordings, recorded or derived", () => {
  assert.deepEqual(Object.keys(SCENARIO_FAULTS).sort(), scenarios.map((s) => s.id).sort());
  assert.deepEqual(
    Object.entries(SCENARIO_FAULTS)
      .filter(([, f]) => f.recorded)
      .map(([id]) => id)
      .sort(),
    ["coredns-down", "fdb-entry-missing", "grpc-backend-gone", "ingress-controller-gone", "kube-proxy-stopped"],
  );
});

for (const s of scenarios) {
  const { recorded } = SCENARIO_FAULTS[s.id] ?? { recorded: false };
  test(`${s.id}: /${s.verdict.hop}/ names the ${s.verdict.tier} hop it breaks (${recorded ? "recorded" : "derived"} fault), and no hop of a healthy run`, async () => {
    const { verdict } = forLab(s, lab);
    const pattern = new RegExp(verdict.hop);
    assert.match(verdict.hop, /^\^/, "anchored: the pattern starts at the hop's name");
    const broken = await tierOn(withFault(SCENARIO_FAULTS[s.id].recordings), verdict.tier);
    assert.equal(broken.verdict, "fail", `${verdict.tier} on the fault's recordings: ${broken.verdict}`);
    const hop = broken.hops.find((h) => !h.ok)!;
    assert.match(broken.firstBrokenHop!, pattern, "the first broken hop");
    const fine = await tierOn(healthy, verdict.tier);
    assert.equal(fine.verdict, "pass");
    assert.ok(
      fine.hops.some((h) => h.name === hop.name),
      `the broken hop "${hop.name}" is one a healthy run shows too: ${fine.hops.map((h) => h.name).join(" | ")}`,
    );
    for (const h of fine.hops) {
      assert.doesNotMatch(`${h.name}: ${h.detail}`, pattern, "a hop of the healthy run");
      // The hop's exact name: the same finding under any other hop's name does not match.
      if (h.name !== hop.name) assert.doesNotMatch(`${h.name}: ${hop.detail}`, pattern, `another hop's name, ${h.name}`);
    }
  });
}

// A workshop scenario as data (scenarios/<id>.yaml): the story a learner reads, the steps that break
// the lab and those that undo it, the verdict the probes must give, hints, and the explanation.
import { z } from "zod";
import { TIER_IDS } from "../probes/contract.ts";

/**
 * Where a step runs: on a node by its position in the lab file (`node: 0` is the first), through
 * kubectl with the lab's admin kubeconfig (args, no shell), or on the outside client.
 */
const step = z.union([
  z.strictObject({ node: z.int().min(0).max(15), run: z.string().min(1) }),
  z.strictObject({ kubectl: z.array(z.string().min(1)).min(1) }),
  z.strictObject({ client: z.string().min(1) }),
]);

export const scenarioSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, "a lowercase id (a-z, 0-9, '-')"),
  title: z.string().min(1),
  level: z.enum(["beginner", "intermediate", "advanced"]),
  /** What the learner is told: a symptom, never the cause. */
  story: z.string().min(1),
  /**
   * The tier the probes must fail at, and a regular expression its first broken hop ("name: detail")
   * must match: anchored at that hop's exact name, then what its detail says when broken, so that no
   * hop of a healthy run matches it (test/scenario-hops.test.ts).
   */
  verdict: z.strictObject({ tier: z.enum(TIER_IDS), hop: z.string().min(1) }),
  apply: z.array(step).min(1),
  /** Undo: idempotent (it runs after a failed apply, and after the learner's own repair). */
  undo: z.array(step).min(1),
  /** Shown one at a time by `k8slab hint`, most general first. */
  hints: z.array(z.string().min(1)).min(2).max(3),
  /** Shown by `k8slab check` once the lab is healed. */
  explanation: z.string().min(1),
  /** Seconds after apply (or undo) for the lab to show it: a kubelet or kube-proxy resync, pods going away. */
  settleSec: z.int().min(0).max(600).default(0),
});

export type Scenario = z.output<typeof scenarioSchema>;
export type ScenarioStep = Scenario["apply"][number];

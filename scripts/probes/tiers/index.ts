// The nine tiers, bottom-up: the order they run in and are reported in (TIER_IDS).
import { TIER_IDS } from "../contract.ts";
import type { Tier } from "../types.ts";
import { businessFlow } from "./business-flow.ts";
import { dns } from "./dns.ts";
import { flannel } from "./flannel.ts";
import { ingress } from "./ingress.ts";
import { nodeport } from "./nodeport.ts";
import { podCrossNode } from "./pod-cross-node.ts";
import { podSameNode } from "./pod-same-node.ts";
import { service } from "./service.ts";
import { underlay } from "./underlay.ts";

export const TIERS: readonly Tier[] = [underlay, flannel, podSameNode, podCrossNode, service, dns, nodeport, ingress, businessFlow];

// One module per tier id, in the contract's order: a mismatch is a programming error, caught at load.
if (TIERS.map((t) => t.id).join() !== TIER_IDS.join()) throw new Error("scripts/probes/tiers: TIERS and TIER_IDS disagree");

// The nine tiers, bottom-up: the order they run in and are reported in (TIER_IDS).
import { TIER_IDS } from "../contract.js";
import type { Tier } from "../types.js";
import { businessFlow } from "./business-flow.js";
import { dns } from "./dns.js";
import { flannel } from "./flannel.js";
import { ingress } from "./ingress.js";
import { nodeport } from "./nodeport.js";
import { podCrossNode } from "./pod-cross-node.js";
import { podSameNode } from "./pod-same-node.js";
import { service } from "./service.js";
import { underlay } from "./underlay.js";

export const TIERS: readonly Tier[] = [underlay, flannel, podSameNode, podCrossNode, service, dns, nodeport, ingress, businessFlow];

// One module per tier id, in the contract's order: a mismatch is a programming error, caught at load.
if (TIERS.map((t) => t.id).join() !== TIER_IDS.join()) throw new Error("scripts/probes/tiers: TIERS and TIER_IDS disagree");

// Builds a lab's tiers in order from a validated Lab; infra/index.ts supplies the Lab from config.
import type { Lab } from "../core/index.ts";
import type { Tier, TierArgs } from "./tier.ts";
import { ControlPlane, CoreDns, Etcd, Flannel, Ingress, KubeProxy, Machines, NodeAgents, Pki, Workloads } from "./tiers/index.ts";

/** Bottom-up: each tier is built on the one before it (DESIGN.md's flow). The key is the tier's resource name. */
export const TIER_ORDER = {
  machines: Machines,
  pki: Pki,
  etcd: Etcd,
  "control-plane": ControlPlane,
  "node-agents": NodeAgents,
  flannel: Flannel,
  "kube-proxy": KubeProxy,
  coredns: CoreDns,
  ingress: Ingress,
  workloads: Workloads,
} as const;

/** The lab's tiers by name, each typed as its class. */
export type LabTiers = { -readonly [K in keyof typeof TIER_ORDER]: InstanceType<(typeof TIER_ORDER)[K]> };

export function buildLab(lab: Lab, built: Pick<TierArgs, "bundleFiles" | "images" | "containerdStore" | "bundleDisk" | "certificatesRenewed"> = {}): LabTiers {
  const tiers: Partial<Record<string, Tier>> = {};
  let below: Tier | undefined;
  for (const [name, TierClass] of Object.entries(TIER_ORDER)) {
    below = new TierClass(name, { lab, after: below, ...built });
    tiers[name] = below;
  }
  return tiers as LabTiers;
}

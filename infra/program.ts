// Builds a lab's tiers in order from a validated Lab; infra/index.ts supplies the Lab from config.
import type { Lab } from "../core/index.js";
import type { Tier, TierArgs } from "./tier.js";
import { ControlPlane, CoreDns, Etcd, Flannel, Ingress, KubeProxy, Machines, NodeAgents, Pki, Workloads } from "./tiers/index.js";

type TierClass = new (name: string, args: TierArgs) => Tier;

/** Bottom-up: each tier is built on the one before it (DESIGN.md's flow). */
export const TIER_ORDER: readonly [string, TierClass][] = [
  ["machines", Machines],
  ["pki", Pki],
  ["etcd", Etcd],
  ["control-plane", ControlPlane],
  ["node-agents", NodeAgents],
  ["flannel", Flannel],
  ["kube-proxy", KubeProxy],
  ["coredns", CoreDns],
  ["ingress", Ingress],
  ["workloads", Workloads],
];

export function buildLab(lab: Lab, built: Pick<TierArgs, "bundleFiles" | "images"> = {}): Tier[] {
  const tiers: Tier[] = [];
  for (const [name, TierClass] of TIER_ORDER) tiers.push(new TierClass(name, { lab, after: tiers.at(-1), ...built }));
  return tiers;
}

// Two snapshots -> what changed, tier by tier, each change with what it means for a packet.
import { type Fact, SNAPSHOT_FORMAT, SNAPSHOT_KIND, SNAPSHOT_TIERS, type Snapshot, type SnapshotTier } from "./canonical.ts";

export interface Change {
  tier: SnapshotTier;
  /** The fact's key, e.g. "node2 fdb". */
  key: string;
  /** What was there and is no longer, and what is there now that was not (lines; a text is compared line by line). */
  removed: string[];
  added: string[];
  /** One sentence: what the change means for traffic. */
  meaning: string;
}

export class SnapshotError extends Error {}

/** A parsed file is a snapshot of this format and lab, or a clear reason why not. */
export function checkSnapshot(value: unknown, what: string, lab?: string): Snapshot {
  const s = value as Partial<Snapshot> | undefined;
  if (!s || typeof s !== "object" || s.kind !== SNAPSHOT_KIND) throw new SnapshotError(`${what}: not a k8slab snapshot (no "kind: ${SNAPSHOT_KIND}")`);
  if (s.format !== SNAPSHOT_FORMAT) {
    throw new SnapshotError(
      `${what}: snapshot format ${s.format}, this k8slab writes ${SNAPSHOT_FORMAT}: take the baseline again with \`npx k8slab snapshot\``,
    );
  }
  if (lab !== undefined && s.lab !== lab) throw new SnapshotError(`${what}: a snapshot of lab "${s.lab}", not of "${lab}"`);
  if (!s.tiers || typeof s.tiers !== "object" || SNAPSHOT_TIERS.some((t) => typeof s.tiers?.[t] !== "object"))
    throw new SnapshotError(`${what}: a snapshot without its tiers`);
  return s as Snapshot;
}

const lines = (f: Fact | undefined): string[] =>
  f === undefined
    ? []
    : Array.isArray(f)
      ? f.map(String)
      : String(f)
          .split("\n")
          .filter((l) => l.trim());

/** Multiset difference: a duplicated line that lost one copy is a removal too. */
function minus(a: string[], b: string[]): string[] {
  const left = new Map<string, number>();
  for (const l of b) left.set(l, (left.get(l) ?? 0) + 1);
  return a.filter((l) => {
    const n = left.get(l) ?? 0;
    if (n > 0) left.set(l, n - 1);
    return n === 0;
  });
}

export function diffSnapshots(baseline: Snapshot, current: Snapshot): Change[] {
  const changes: Change[] = [];
  for (const tier of SNAPSHOT_TIERS) {
    const before = baseline.tiers[tier] ?? {};
    const after = current.tiers[tier] ?? {};
    for (const key of [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()) {
      const [b, a] = [lines(before[key]), lines(after[key])];
      const removed = minus(b, a);
      const added = minus(a, b);
      if (!removed.length && !added.length) continue;
      changes.push({ tier, key, removed, added, meaning: meaningOf(tier, key, removed, added, key in before, key in after) });
    }
  }
  return changes;
}

const SYSCTL_MEANING: Record<string, (v: string) => string> = {
  "net.ipv4.ip_forward": (v) =>
    v === "0" ? "the node no longer forwards: traffic between its pods and anything off the node stops" : "forwarding is on again",
  "net.bridge.bridge-nf-call-iptables": (v) =>
    v === "0" ? "bridged pod traffic skips iptables: a Service whose pod is on the same node is not DNATed back" : "bridged pod traffic passes iptables again",
};

/** The sentence for a change: specific where the fact is known, else what kind of fact changed. */
export function meaningOf(tier: SnapshotTier, key: string, removed: string[], added: string[], wasThere: boolean, isThere: boolean): string {
  const node = /^(\S+) /.exec(key)?.[1] ?? "";
  const what = key.slice(node.length).trim();
  if (!wasThere) return `${key} is new`;
  if (!isThere) return `${key} is gone`;
  const vtep = (l: string) => /<(\S+) VTEP>/.exec(l)?.[1];
  switch (`${tier} ${what}`) {
    case "flannel fdb":
      if (removed.length && !added.length)
        return `${node}: no FDB entry for ${removed.map((l) => `${vtep(l) ?? "a peer"}'s VTEP`).join(", ")}: cross-node pod traffic has no tunnel endpoint`;
      return `${node}: the FDB maps a VTEP elsewhere: VXLAN packets go to the wrong node`;
    case "flannel neighbours":
      if (removed.length && !added.length)
        return `${node}: no neighbour entry for ${removed.map((l) => `${vtep(l) ?? "a peer"}'s VTEP`).join(", ")}: the inner frame has no destination MAC, cross-node pod traffic stops`;
      return `${node}: a peer subnet's gateway resolves to another MAC: inner frames go to the wrong VTEP`;
    case "flannel routes":
      return removed.length && !added.length
        ? `${node}: no route to ${removed.map((l) => l.split(" ")[0]).join(", ")} over the overlay: its pods cannot reach that node's pods`
        : `${node}: pod-subnet routes over the overlay changed`;
    case "flannel device": {
      const mtu = (l: string) => /mtu (\d+)/.exec(l)?.[1];
      if (mtu(removed[0] ?? "") !== mtu(added[0] ?? "")) {
        return `${node}: the VXLAN device's MTU is ${mtu(added[0] ?? "") ?? "gone"} (was ${mtu(removed[0] ?? "")}): a mismatch with the peer's or the underlay's lets small packets through and stalls large transfers`;
      }
      return `${node}: the VXLAN device changed (VNI, port, local address or state): the peer's packets may no longer reach it`;
    }
    case "flannel leases":
      return "etcd's subnet leases changed: flanneld on every node rebuilds its routes, neighbours and FDB from them";
    case "underlay eth0":
      return `${node}: the LAN interface changed (address, MTU or state): VXLAN packets cross it`;
    case "underlay routes":
      return `${node}: the node's own routes changed: traffic to the LAN or off it may take another way`;
    case "underlay links":
      return `${node}: network devices ${added.length ? `appeared (${added.join(", ")})` : ""}${added.length && removed.length ? " and " : ""}${removed.length ? `went away (${removed.join(", ")})` : ""}`;
    case "pods bridge":
      return `${node}: the pod bridge changed (address, MTU or state): every pod on the node sends through it`;
    case "pods veths off the bridge":
      return `${node}: pod veths not attached to the bridge: ${added.join(", ") || "none now"}: those pods are cut off`;
    case "pods sysctls": {
      const said = added.map((l) => {
        const [name, , value] = l.split(" ");
        return (
          SYSCTL_MEANING[name]?.(value) ??
          (name.endsWith("rp_filter") && value !== "0"
            ? `${name} = ${value}: reverse-path filtering may drop pod traffic that arrives on another interface than its reply leaves`
            : `${l}`)
        );
      });
      return `${node}: ${said.join("; ")}`;
    }
    case "services nat":
    case "services filter": {
      const chains = [...new Set([...removed, ...added].map((l) => /^-A (\S+)/.exec(l)?.[1] ?? /^:(\S+)/.exec(l)?.[1] ?? "?"))];
      const service = [...new Set([...removed, ...added].map((l) => /--comment "?([^"\s]+\/[^"\s]+?)(?: |")/.exec(l)?.[1]).filter(Boolean))];
      return `${node}: ${what === "nat" ? "kube-proxy's or flannel's NAT rules" : "filter rules"} changed in ${chains.join(", ")}${service.length ? ` (${service.join(", ")})` : ""}: ${removed.length && !added.length ? "traffic those rules rewrote or let through is no longer" : "packets are rewritten or filtered differently"}`;
    }
    case "dns Corefile":
      return "CoreDNS's configuration changed: how every pod's names are answered";
    case "ingress objects":
      return "the Ingress rules changed: which Host and path reach which Service";
    case "configs digests":
      return `${node}: rendered configs changed (${[...new Set([...removed, ...added].map((l) => l.split(" ")[0]))].join(", ")}): the daemons that read them run with other settings`;
    default:
      if (tier === "services" && what.endsWith("endpoints"))
        return `${key.replace(/ endpoints$/, "")}: its ready endpoints changed: the Service sends to other pods, or to none`;
      if (tier === "services") return `${key}: the Service changed (type, ports, ClusterIP or selector)`;
      if (tier === "versions") return `${key}: another version runs`;
      return `${key} changed`;
  }
}

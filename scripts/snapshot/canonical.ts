// Raw reads -> a snapshot: the dataplane as facts grouped by tier, with every value that differs
// between two healthy builds of one lab file replaced by its role: a pod IP by its workload, a
// dynamic ClusterIP by its Service, a VTEP MAC by its node, a KUBE-SEP chain by its Service port.
// Pod placement (which node got which replica) is left out: the scheduler may choose otherwise.
import type { Lab } from "../../core/index.ts";
import { contains, parseAddress, parseCidr } from "../../core/net.ts";
import type { RawSnapshot } from "./collect.ts";

export const SNAPSHOT_KIND = "k8slab-snapshot";
export const SNAPSHOT_FORMAT = 1;

/** The tiers a snapshot groups its facts by, bottom-up (the probes' tiers where they match). */
export const SNAPSHOT_TIERS = ["underlay", "flannel", "pods", "services", "dns", "ingress", "configs", "versions"] as const;
export type SnapshotTier = (typeof SNAPSHOT_TIERS)[number];

/** A fact: one line, a set of lines (order carries no meaning), or a text (a Corefile). */
export type Fact = string | string[];

export interface Snapshot {
  kind: typeof SNAPSHOT_KIND;
  format: number;
  lab: string;
  /** When it was taken: shown, never compared. */
  takenAt: string;
  /** Per tier, facts by key ("node1 fdb", "default/business-manager endpoints"). */
  tiers: Record<SnapshotTier, Record<string, Fact>>;
}

/** Every varying value (as it may appear in a line) with its role, longest first, each matched as a whole word. */
interface Roles {
  replacers: [RegExp, string][];
}

const json = <T>(text: string): T[] => {
  try {
    const v = JSON.parse(text);
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
};

/** What a read said when it failed: kept as a fact, so a missing device is a difference too. */
const failed = (text: string) => (text.startsWith("error: ") ? text.split("\n")[0] : undefined);

/** Replaces every known value in a line by its role, longest first (so 172.30.1.10 is not read as 172.30.1.1). */
function canon(line: string, roles: Roles): string {
  return roles.replacers.reduce((out, [pattern, role]) => out.replace(pattern, role), line);
}

/** Pods, Services, EndpointSlices and leases name every varying value. */
function rolesOf(lab: Lab, raw: RawSnapshot): Roles {
  const names = new Map<string, string>();
  const podNetwork = parseCidr(lab.pods.cidr)!;
  for (const row of raw.api.pods.split("\n")) {
    const [ns, name, ip, , kind, owner] = row.split("\t");
    const address = parseAddress(ip);
    if (address === undefined || !contains(podNetwork, address)) continue; // hostNetwork pods have the node's address
    const workload = kind === "ReplicaSet" ? owner.replace(/-[a-z0-9]+$/, "") : (owner ?? name);
    names.set(ip, `<pod ${ns}/${workload}>`);
  }
  const fixed = new Set([lab.services.dnsIP, lab.services.kubernetesServiceIP]);
  for (const svc of items(raw.api.services)) {
    const ip = svc?.spec?.clusterIP;
    if (ip && ip !== "None" && !fixed.has(ip)) names.set(ip, `<ClusterIP ${svc.metadata.namespace}/${svc.metadata.name}>`);
  }
  const leases = raw.nodes[lab.controlPlane.name]?.leases ?? "";
  for (const lease of parseLeases(leases)) {
    const node = lab.nodes.find((n) => n.address === lease.publicIP)?.name ?? lease.publicIP;
    if (lease.vtepMAC) names.set(lease.vtepMAC, `<${node} VTEP>`);
  }
  // Built once per snapshot, longest value first; not inside a longer address or name: 172.30.1.1 is not
  // the start of 172.30.1.10 (a port after ":" may follow).
  const replacers = [...names]
    .sort((a, b) => b[0].length - a[0].length)
    .map(([value, role]): [RegExp, string] => [
      new RegExp(`(?<![\\w.:-])${value.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?![\\w-]|\\.\\d|:[\\da-f]{2}:)`, "g"),
      role,
    ]);
  return { replacers };
}

/** The items of a `kubectl get -o json` list; none when the read failed. */
function items(listJson: string): any[] {
  try {
    return JSON.parse(listJson).items ?? [];
  } catch {
    return [];
  }
}

interface Lease {
  subnet: string;
  publicIP: string;
  type: string;
  vni?: number;
  vtepMAC?: string;
}

function parseLeases(text: string): Lease[] {
  const lines = text.split("\n");
  const out: Lease[] = [];
  for (let i = 0; i < lines.length - 1; i++) {
    const m = /\/subnets\/([\d.]+)-(\d+)$/.exec(lines[i]);
    if (!m) continue;
    try {
      const v = JSON.parse(lines[i + 1]);
      out.push({ subnet: `${m[1]}/${m[2]}`, publicIP: v.PublicIP, type: v.BackendType, vni: v.BackendData?.VNI, vtepMAC: v.BackendData?.VtepMAC });
    } catch {
      // a value that is not JSON: the lease line below says nothing of it
    }
  }
  return out.sort((a, b) => a.subnet.localeCompare(b.subnet));
}

const sorted = (lines: string[]) => [...lines].sort();

function linkLine(l: any, addresses: any[]): string {
  const addr =
    addresses
      .find((a) => a.ifname === l.ifname)
      ?.addr_info?.filter((a: any) => a.family === "inet")
      .map((a: any) => `${a.local}/${a.prefixlen}`) ?? [];
  const vx = l.linkinfo?.info_kind === "vxlan" ? l.linkinfo.info_data : undefined;
  const kind = l.linkinfo?.info_kind ? ` ${l.linkinfo.info_kind}` : "";
  const vxlan = vx ? ` id ${vx.id} port ${vx.port} local ${vx.local} dev ${vx.link ?? "-"}${vx.learning ? " learning" : " nolearning"}` : "";
  const up = l.flags?.includes("UP") ? "UP" : "DOWN";
  return `${l.ifname}${kind}${vxlan}${addr.length ? ` ${addr.join(" ")}` : ""} mtu ${l.mtu} ${up}`;
}

function routeLine(r: any): string {
  return [
    r.dst,
    r.gateway && `via ${r.gateway}`,
    `dev ${r.dev}`,
    r.scope && r.scope !== "global" && `scope ${r.scope}`,
    r.prefsrc && `src ${r.prefsrc}`,
    ...(r.flags ?? []),
  ]
    .filter(Boolean)
    .join(" ");
}

/**
 * iptables-save without counters, comments on the generation, or KUBE-SEP hashes: each KUBE-SEP
 * chain is named by the Service port its rules' comment names (its hash covers the pod IP).
 */
function iptablesLines(text: string, roles: Roles): string[] {
  if (failed(text)) return [failed(text)!];
  const lines = text.split("\n").filter((l) => l && !l.startsWith("#") && l !== "COMMIT" && !l.startsWith("*"));
  const sepRole = new Map<string, string>();
  for (const l of lines) {
    const m = /^-A (KUBE-SEP-\w+) .*--comment "?([^"\s]+)"?/.exec(l);
    if (m) sepRole.set(m[1], `KUBE-SEP<${m[2]}>`);
  }
  const out = lines.map((l) => {
    let line = l.startsWith(":") ? l.replace(/ \[\d+:\d+\]$/, "") : l;
    for (const [chain, role] of sepRole) line = line.replaceAll(chain, role);
    return canon(line, roles);
  });
  return sorted(out);
}

/**
 * kube-proxy's own table in its ipvs or nftables mode, line by line. nftables names an endpoint's chain
 * with a hash of the endpoint (its pod IP): the hash goes, the pod's role stays.
 */
function tableLines(text: string, roles: Roles): string[] {
  if (failed(text)) return [failed(text)!];
  return sorted(
    text
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !/^(Prot LocalAddress|-> RemoteAddress|IP Virtual Server)/.test(l))
      .map((l) => canon(l.replace(/\b(endpoint|service|external)-[A-Z2-7]{8}-/g, "$1-"), roles)),
  );
}

function sysctlFacts(text: string): string[] {
  return sorted(text.split("\n").filter((l) => l.includes(" = ")));
}

function serviceLine(svc: any, roles: Roles): string {
  const s = svc.spec ?? {};
  const ports = (s.ports ?? [])
    .map((p: any) => `${p.name ?? "-"} ${p.port}/${p.protocol}->${p.targetPort}${p.nodePort ? ` nodePort ${p.nodePort}` : ""}`)
    .join(", ");
  const selector = Object.entries(s.selector ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  return canon(`${s.type} ${s.clusterIP ?? "-"} ports ${ports || "none"} selector ${selector || "none"}`, roles);
}

function endpointLines(slices: any[], roles: Roles): Map<string, string> {
  const byService = new Map<string, string[]>();
  for (const sl of slices) {
    const svc = `${sl.metadata.namespace}/${sl.metadata.labels?.["kubernetes.io/service-name"] ?? sl.metadata.name}`;
    const eps = (sl.endpoints ?? []).map((e: any) => `${canon(e.addresses?.[0] ?? "-", roles)}${e.conditions?.ready === false ? " not ready" : ""}`);
    const ports = (sl.ports ?? []).map((p: any) => `${p.name ?? "-"} ${p.port}/${p.protocol}`);
    byService.set(svc, [...(byService.get(svc) ?? []), ...sorted(eps).map((e) => `${e} ports ${sorted(ports).join(", ")}`)]);
  }
  return new Map([...byService].map(([k, v]) => [k, `${v.length} endpoints: ${countSame(v)}`]));
}

/** ["a", "a", "b"] -> "a x2, b": replicas of one workload are one role. */
function countSame(lines: string[]): string {
  const counts = new Map<string, number>();
  for (const l of sorted(lines)) counts.set(l, (counts.get(l) ?? 0) + 1);
  return [...counts].map(([l, n]) => (n > 1 ? `${l} x${n}` : l)).join("; ") || "none";
}

function ingressLines(list: any[]): string[] {
  return sorted(
    list.flatMap((o) => {
      if (o.kind === "IngressClass") return [`IngressClass ${o.metadata.name} controller ${o.spec?.controller}`];
      const rules = (o.spec?.rules ?? []).flatMap((r: any) =>
        (r.http?.paths ?? []).map(
          (p: any) =>
            `host ${r.host ?? "*"} path ${p.path ?? "/"} (${p.pathType}) -> ${p.backend?.service?.name}:${p.backend?.service?.port?.number ?? p.backend?.service?.port?.name}`,
        ),
      );
      return [`Ingress ${o.metadata.namespace}/${o.metadata.name} class ${o.spec?.ingressClassName ?? "-"}: ${rules.join("; ") || "no rules"}`];
    }),
  );
}

const firstLine = (text: string) => (failed(text) ?? text.trim().split("\n")[0]) || "(nothing)";

export function canonicalize(lab: Lab, raw: RawSnapshot): Snapshot {
  const roles = rolesOf(lab, raw);
  const tiers = Object.fromEntries(SNAPSHOT_TIERS.map((t) => [t, {}])) as Snapshot["tiers"];
  const dev = lab.pods.flannel.device;
  const bridge = lab.pods.bridge;
  for (const node of lab.nodes) {
    const r = raw.nodes[node.name] ?? {};
    const links = json<any>(r.links ?? "");
    const addresses = json<any>(r.addresses ?? "");
    const link = (name: string) => {
      const l = links.find((x) => x.ifname === name);
      return l ? linkLine(l, addresses) : (failed(r.links ?? "") ?? `no ${name}`);
    };
    const routes = json<any>(r.routes ?? "").map(routeLine);
    const n = node.name;
    tiers.underlay[`${n} ${"eth0"}`] = link("eth0");
    tiers.underlay[`${n} routes`] = sorted(routes.filter((l) => !l.includes(`dev ${dev}`) && !l.includes(`dev ${bridge}`)));
    // Links other than pods' veths: a device added or gone (kube-ipvs0, a second bridge) shows here.
    tiers.underlay[`${n} links`] = sorted(
      links.filter((l) => l.linkinfo?.info_kind !== "veth").map((l) => `${l.ifname}${l.linkinfo?.info_kind ? ` ${l.linkinfo.info_kind}` : ""}`),
    );
    if (dev) tiers.flannel[`${n} device`] = link(dev);
    tiers.flannel[`${n} routes`] = sorted(routes.filter((l) => l.includes(`dev ${dev}`)));
    tiers.flannel[`${n} neighbours`] = failed(r.neighbours ?? "")
      ? [failed(r.neighbours)!]
      : sorted(json<any>(r.neighbours ?? "").map((e) => canon(`${e.dst} lladdr ${e.lladdr ?? "-"} ${(e.state ?? []).join(",")}`, roles)));
    tiers.flannel[`${n} fdb`] = failed(r.fdb ?? "")
      ? [failed(r.fdb)!]
      : sorted(json<any>(r.fdb ?? "").map((e) => canon(`${e.mac} dst ${e.dst ?? "-"} ${[...(e.flags ?? []), e.state].filter(Boolean).join(" ")}`, roles)));
    tiers.pods[`${n} bridge`] = link(bridge);
    tiers.pods[`${n} veths off the bridge`] = sorted(links.filter((l) => l.linkinfo?.info_kind === "veth" && l.master !== bridge).map((l) => l.ifname));
    tiers.pods[`${n} sysctls`] = sysctlFacts(r.sysctls ?? "");
    tiers.services[`${n} nat`] = iptablesLines(r.nat ?? "", roles);
    if (r.ipvs !== undefined) tiers.services[`${n} ipvs`] = tableLines(r.ipvs, roles);
    if (r.nftables !== undefined) tiers.services[`${n} nftables`] = tableLines(r.nftables, roles);
    tiers.services[`${n} filter`] = iptablesLines(r.filter ?? "", roles);
    tiers.configs[`${n} digests`] = sorted(
      (r.digests ?? "")
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split(/\s+/).reverse().join(" ")),
    );
    for (const v of ["kernel", "kubelet", "kube-proxy", "flanneld", "containerd", ...(node.isControlPlane ? ["etcd"] : [])]) {
      tiers.versions[`${n} ${v}`] = firstLine(r[v] ?? "error: not read");
    }
  }
  const leases = raw.nodes[lab.controlPlane.name]?.leases ?? "";
  tiers.flannel.leases = failed(leases)
    ? [failed(leases)!]
    : parseLeases(leases).map((l) =>
        canon(`${l.subnet} -> ${lab.nodes.find((n) => n.address === l.publicIP)?.name ?? "?"} ${l.publicIP} ${l.type} VNI ${l.vni} VTEP ${l.vtepMAC}`, roles),
      );
  for (const svc of items(raw.api.services)) tiers.services[`${svc.metadata.namespace}/${svc.metadata.name}`] = serviceLine(svc, roles);
  for (const [svc, line] of endpointLines(items(raw.api.endpointslices), roles)) tiers.services[`${svc} endpoints`] = line;
  tiers.ingress.objects = ingressLines(items(raw.api.ingresses));
  try {
    tiers.dns.Corefile = JSON.parse(raw.api.coredns).data?.Corefile ?? "(no Corefile)";
  } catch {
    tiers.dns.Corefile = failed(raw.api.coredns) ?? "(not read)";
  }
  try {
    tiers.versions["API server"] = JSON.parse(raw.api.version).serverVersion?.gitVersion ?? "(unknown)";
  } catch {
    tiers.versions["API server"] = failed(raw.api.version) ?? "(not read)";
  }
  return { kind: SNAPSHOT_KIND, format: SNAPSHOT_FORMAT, lab: lab.name, takenAt: raw.takenAt, tiers };
}

// How kube-proxy's chosen mode writes a Service into a node's kernel, read back the same way for
// each: the table's entry for a ClusterIP:port (or a NodePort), its name for the Service, and per
// backend where it DNATs to and, where the table counts them, how many connections it sent there.
//   iptables: KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-* (rule counters: iptables-save -c)
//   ipvs:     a virtual server on kube-ipvs0's address, its pods as real servers (ipvsadm --stats)
//   nftables: the table ip kube-proxy: service-ips verdict map -> service-* chain -> endpoint-* chains
//             (no counters: the spread is read from conntrack instead)
import type { Lab } from "../../core/index.ts";
import { nodePortRules, parseIptablesNat, serviceRules } from "./parse.ts";

export interface ServicePath {
  /** The table's entry for the address and port, as evidence; absent: nothing sends it on. */
  entry?: string;
  /** The table's name for the Service. */
  name?: string;
  /** weight: the chance the table gives it (iptables p=...); draining: still in the table but sent no new connection (IPVS weight 0, a terminating pod). */
  backends: { name: string; to: string; count?: number; weight?: string; draining?: true }[];
}

/** The backends that get new connections (not an IPVS real server at weight 0, draining). */
export const activeBackends = (path: ServicePath) => path.backends.filter((e) => !e.draining);

export interface Dataplane {
  mode: Lab["services"]["kubeProxyMode"];
  /** One read of the node's Service table (with its counters, where it has them). */
  read: string;
  /** The same table without counters (enough to see the rules). */
  readRules: string;
  service(text: string, clusterIP: string, port: number): ServicePath;
  nodePort(text: string, nodeAddress: string, port: number): ServicePath;
  /** What rewrites a packet to a Service, as a learner calls it. */
  table: string;
  /** The table's entry hop for a ClusterIP and for a NodePort. */
  entryNames: { service: string; nodePort: string };
  /** How one backend is chosen for a new connection. */
  picks: string;
  /** Whether `count` can be compared before and after (else the spread comes from conntrack). */
  counts: boolean;
  /** Seconds after traffic before the counters `read` shows include it. */
  countsLagSec?: number;
  /** What a learner looks at, by hand. */
  look: string;
}

const iptables: Dataplane = {
  mode: "iptables",
  table: "nat table",
  entryNames: { service: "KUBE-SERVICES", nodePort: "KUBE-NODEPORTS" },
  picks: "picked at random",
  read: "iptables-save -t nat -c",
  readRules: "iptables-save -t nat",
  counts: true,
  look: "iptables -t nat -S KUBE-SERVICES",
  service(text, clusterIP, port) {
    const r = serviceRules(parseIptablesNat(text), clusterIP, port);
    return {
      ...(r.entry ? { entry: `KUBE-SERVICES -d ${clusterIP}/32 tcp dpt:${port} -> ${r.svcChain}`, name: r.svcChain } : {}),
      backends: r.endpoints.map((e) => ({
        name: e.chain,
        to: e.dnatTo ?? "?",
        ...(e.packets !== undefined ? { count: e.packets } : {}),
        weight: `p=${e.probability ?? 1}`,
      })),
    };
  },
  nodePort(text, _address, port) {
    const r = nodePortRules(parseIptablesNat(text), port);
    return {
      ...(r.entry
        ? { entry: `KUBE-NODEPORTS tcp dpt:${port} -> ${r.extChain}${r.svcChain && r.svcChain !== r.extChain ? ` -> ${r.svcChain}` : ""}`, name: r.svcChain }
        : {}),
      backends: r.endpoints.map((e) => ({ name: e.chain, to: e.dnatTo ?? "?" })),
    };
  },
};

/**
 * `ipvsadm -Ln` and/or `ipvsadm -Ln --stats`, one listing after the other: virtual servers
 * ("TCP  10.254.70.70:80 rr", or with --stats "... 30 ...") each followed by its real servers
 * ("  -> 172.30.1.6:80  Masq 1 0 0": the weight; with --stats "... 10 ...": Conns). A server listed
 * twice is merged, so one read gives both each real server's weight and its connection count.
 */
export function parseIpvsadm(
  text: string,
): { proto: string; address: string; conns?: number; reals: { address: string; conns?: number; weight?: number }[] }[] {
  const servers: ReturnType<typeof parseIpvsadm> = [];
  let current: (typeof servers)[number] | undefined;
  for (const line of text.split("\n")) {
    const v = /^(TCP|UDP|SCTP)\s+(\S+:\d+)(?:\s+(\d+))?/.exec(line);
    if (v) {
      current = servers.find((s) => s.proto === v[1] && s.address === v[2]);
      if (!current) {
        current = { proto: v[1], address: v[2], reals: [] };
        servers.push(current);
      }
      if (v[3] !== undefined) current.conns = Number(v[3]);
      continue;
    }
    const r = /^\s+->\s+(\d+\.\d+\.\d+\.\d+:\d+)\s+(\S+)(?:\s+(\d+))?/.exec(line);
    if (!r || !current) continue;
    let real = current.reals.find((x) => x.address === r[1]);
    if (!real) {
      real = { address: r[1] };
      current.reals.push(real);
    }
    // The column after the address: Conns (--stats) or the forwarding method (then the weight).
    if (/^\d+$/.test(r[2])) real.conns = Number(r[2]);
    else if (r[3] !== undefined) real.weight = Number(r[3]);
  }
  return servers;
}

const ipvsPath = (text: string, address: string): ServicePath => {
  const v = parseIpvsadm(text).find((s) => s.proto === "TCP" && s.address === address);
  return v
    ? {
        entry: `virtual server TCP ${address} (kube-ipvs0 holds the address)`,
        name: `IPVS ${address}`,
        // Weight 0: a terminating pod kube-proxy keeps until its connections end; it gets no new one.
        backends: v.reals.map((r) => ({
          name: `real server ${r.address}`,
          to: r.address,
          ...(r.conns !== undefined ? { count: r.conns } : {}),
          ...(r.weight === 0 ? { draining: true } : {}),
        })),
      }
    : { backends: [] };
};

const ipvs: Dataplane = {
  mode: "ipvs",
  table: "IPVS table",
  entryNames: { service: "IPVS", nodePort: "IPVS" },
  picks: "in turn (round robin)",
  read: "ipvsadm -Ln; ipvsadm -Ln --stats",
  // The kernel's estimator sums each CPU's counters into what ipvsadm shows every 2 s (ip_vs_est.c).
  countsLagSec: 3,
  readRules: "ipvsadm -Ln",
  counts: true,
  look: "ipvsadm -Ln; ip addr show kube-ipvs0",
  service: (text, clusterIP, port) => ipvsPath(text, `${clusterIP}:${port}`),
  nodePort: (text, address, port) => ipvsPath(text, `${address}:${port}`),
};

/** `nft list table ip kube-proxy`: a verdict map's element for `key` ("10.254.70.70 . tcp . 80"), the chain it goes to, and that chain's endpoint chains and their DNAT targets. */
export function nftPath(text: string, map: string, key: string): ServicePath {
  const mapBody = new RegExp(`map ${map} \\{[\\s\\S]*?elements = \\{([\\s\\S]*?)\\}`).exec(text)?.[1] ?? "";
  const chain = new RegExp(`${key.replaceAll(".", "\\.")} : goto (\\S+?)[,\\s]`).exec(`${mapBody} `)?.[1];
  if (!chain) return { backends: [] };
  const body = (name: string) => new RegExp(`chain ${name.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} \\{([\\s\\S]*?)\\n\\s*\\}`).exec(text)?.[1] ?? "";
  // A NodePort's external-* chain hands over to the Service's own chain.
  const service = /goto (service-\S+)/.exec(body(chain))?.[1] ?? chain;
  const endpoints = [...body(service).matchAll(/goto (endpoint-\S+?)[,\s}]/g)].map((m) => m[1]);
  return {
    entry: `${map}: ${key} -> ${chain}`,
    name: service,
    backends: endpoints.map((e) => ({ name: e, to: /dnat to (\S+)/.exec(body(e))?.[1] ?? "?" })),
  };
}

const nftables: Dataplane = {
  mode: "nftables",
  table: "nftables table",
  entryNames: { service: "service-ips", nodePort: "service-nodeports" },
  picks: "picked at random (numgen)",
  read: "nft list table ip kube-proxy",
  readRules: "nft list table ip kube-proxy",
  counts: false,
  look: "nft list table ip kube-proxy",
  service: (text, clusterIP, port) => nftPath(text, "service-ips", `${clusterIP} . tcp . ${port}`),
  nodePort: (text, _address, port) => nftPath(text, "service-nodeports", `tcp . ${port}`),
};

export const dataplaneOf = (lab: Lab): Dataplane => ({ iptables, ipvs, nftables })[lab.services.kubeProxyMode];

/** `conntrack -L -p tcp -d ADDRESS --dport PORT`: connections per backend (the reply's source), for a table that does not count them. */
export function conntrackSpread(text: string): Map<string, number> {
  const spread = new Map<string, number>();
  for (const line of text.split("\n")) {
    const f = [...line.matchAll(/\b(src|sport)=(\S+)/g)].map((m) => m[2]);
    if (f.length < 4) continue;
    const backend = `${f[2]}:${f[3]}`; // the reply tuple: from the backend
    spread.set(backend, (spread.get(backend) ?? 0) + 1);
  }
  return spread;
}

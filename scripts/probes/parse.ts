// Pure parsers for the evidence probes collect (iproute2 JSON, etcdctl, iptables-save, tcpdump, ping, dig, curl, kubectl), and the commands whose output format they fix.
import { shq } from "../../core/shell.ts";

function json<T>(text: string): T[] {
  const t = text.trim();
  if (!t) return [];
  const v = JSON.parse(t);
  return Array.isArray(v) ? v : [v];
}

// ---- iproute2 (ip -j, bridge -j; iproute2 6.x) ----

export interface Link {
  ifindex: number;
  name: string;
  mac: string;
  mtu: number;
  up: boolean;
  /** The bridge this port is attached to. */
  master?: string;
  /** For a veth inside a pod: the ifindex of its peer on the node. */
  peerIfindex?: number;
  /** IPv4 addresses as CIDRs. */
  addresses: string[];
}

/** `ip -j link show ...` or `ip -j addr show ...`. */
export function parseLinks(text: string): Link[] {
  return json<any>(text).map((l) => ({
    ifindex: l.ifindex,
    name: l.ifname,
    mac: l.address,
    mtu: l.mtu,
    up: Array.isArray(l.flags) && l.flags.includes("UP"),
    ...(l.master ? { master: l.master } : {}),
    ...(l.link_index !== undefined ? { peerIfindex: l.link_index } : {}),
    addresses: (l.addr_info ?? []).filter((a: any) => a.family === "inet").map((a: any) => `${a.local}/${a.prefixlen}`),
  }));
}

export interface VxlanDevice extends Link {
  vni: number;
  port: number;
  /** The underlay address VXLAN packets leave from. */
  local?: string;
  /** The underlay NIC. */
  dev?: string;
  learning: boolean;
}

/** `ip -d -j link show flannel.1`; undefined when the device is missing or is not VXLAN. */
export function parseVxlanLink(text: string): VxlanDevice | undefined {
  const raw = json<any>(text)[0];
  const data = raw?.linkinfo?.info_kind === "vxlan" ? raw.linkinfo.info_data : undefined;
  if (!data) return undefined;
  return { ...parseLinks(text)[0], vni: data.id, port: data.port, local: data.local, dev: data.link, learning: !!data.learning };
}

export interface Route {
  dst: string;
  gateway?: string;
  dev: string;
  flags: string[];
}

/** `ip -j route show` and `ip -j route get ADDRESS`. */
export function parseRoutes(text: string): Route[] {
  return json<any>(text).map((r) => ({ dst: r.dst, ...(r.gateway ? { gateway: r.gateway } : {}), dev: r.dev, flags: r.flags ?? [] }));
}

export interface Neighbour {
  dst: string;
  mac?: string;
  /** e.g. ["PERMANENT"], ["REACHABLE"], ["FAILED"]. */
  state: string[];
}

/** `ip -j neigh show ...`. */
export function parseNeighbours(text: string): Neighbour[] {
  return json<any>(text).map((n) => ({ dst: n.dst, ...(n.lladdr ? { mac: n.lladdr } : {}), state: n.state ?? [] }));
}

export interface FdbEntry {
  mac: string;
  /** The remote VTEP (VXLAN devices only). */
  dst?: string;
  /** The bridge port (with `show br BRIDGE`). */
  port?: string;
  flags: string[];
  /** "permanent", or "" for a learned entry. */
  state: string;
}

/** `bridge -j fdb show dev flannel.1` or `bridge -j fdb show br cni0`. */
export function parseFdb(text: string): FdbEntry[] {
  return json<any>(text).map((e) => ({
    mac: e.mac,
    ...(e.dst ? { dst: e.dst } : {}),
    ...(e.ifname ? { port: e.ifname } : {}),
    flags: e.flags ?? [],
    state: e.state ?? "",
  }));
}

// ---- flannel's leases in etcd ----

export interface FlannelLease {
  /** e.g. 172.30.1.0/24 */
  subnet: string;
  publicIP: string;
  backendType: string;
  vni?: number;
  vtepMAC?: string;
}

/**
 * `etcdctl get --prefix <prefix>/subnets`: key and value lines alternate. Keys look like
 * <prefix>/subnets/172.30.1.0-24; values are flannel's one-line JSON lease attributes.
 */
export function parseFlannelLeases(text: string): FlannelLease[] {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  const leases: FlannelLease[] = [];
  for (let i = 0; i < lines.length - 1; i++) {
    const key = /\/subnets\/(\d+\.\d+\.\d+\.\d+)-(\d+)$/.exec(lines[i]);
    if (!key) continue;
    try {
      const v = JSON.parse(lines[i + 1]);
      leases.push({
        subnet: `${key[1]}/${key[2]}`,
        publicIP: v.PublicIP,
        backendType: v.BackendType,
        ...(v.BackendData?.VNI !== undefined ? { vni: v.BackendData.VNI } : {}),
        ...(v.BackendData?.VtepMAC ? { vtepMAC: v.BackendData.VtepMAC } : {}),
      });
      i++;
    } catch {
      /* not a lease value: keep scanning */
    }
  }
  return leases;
}

// ---- iptables-save -t nat [-c] ----

export interface NatRule {
  chain: string;
  /** Packets counted by this rule (with iptables-save -c); each is a new connection in the nat table. */
  packets?: number;
  target?: string;
  /** -d of the rule, without a /32. */
  dest?: string;
  proto?: string;
  dport?: number;
  toDestination?: string;
  comment?: string;
  probability?: number;
  text: string;
}

export interface NatTable {
  chains: Set<string>;
  rules: NatRule[];
}

/** The nat table of `iptables-save -t nat -c` (counters optional). */
export function parseIptablesNat(text: string): NatTable {
  const chains = new Set<string>();
  const rules: NatRule[] = [];
  let inNat = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) inNat = line === "*nat";
    if (!inNat) continue;
    const chain = /^:(\S+)/.exec(line);
    if (chain) chains.add(chain[1]);
    const m = /^(?:\[(\d+):\d+\]\s+)?-A (\S+) (.*)$/.exec(line);
    if (!m) continue;
    const rest = m[3];
    const field = (re: RegExp) => re.exec(rest)?.[1];
    const comment = /--comment (?:"((?:[^"\\]|\\.)*)"|(\S+))/.exec(rest);
    const dport = field(/--dport (\d+)/);
    const probability = field(/--probability ([\d.]+)/);
    rules.push({
      chain: m[2],
      ...(m[1] !== undefined ? { packets: Number(m[1]) } : {}),
      ...opt("target", field(/-j (\S+)/)),
      ...opt("dest", field(/(?:^|\s)-d (\d+\.\d+\.\d+\.\d+)(?:\/32)?\b/)),
      ...opt("proto", field(/(?:^|\s)-p (\w+)/)),
      ...(dport ? { dport: Number(dport) } : {}),
      ...opt("toDestination", field(/--to-destination (\S+)/)),
      ...opt("comment", comment ? (comment[1] ?? comment[2]) : undefined),
      ...(probability ? { probability: Number(probability) } : {}),
      text: `-A ${m[2]} ${rest}`,
    });
  }
  return { chains, rules };
}

const opt = <K extends string>(k: K, v: string | undefined) => (v === undefined ? {} : ({ [k]: v } as Record<K, string>));

export interface ServiceEndpointRule {
  /** KUBE-SEP-... */
  chain: string;
  /** The pod address the DNAT rule rewrites to, ip:port. */
  dnatTo?: string;
  probability?: number;
  /** The DNAT rule's packet counter. */
  packets?: number;
}

export interface ServiceRules {
  /** The KUBE-SERVICES rule matching the ClusterIP and port. */
  entry?: NatRule;
  /** KUBE-SVC-... */
  svcChain?: string;
  endpoints: ServiceEndpointRule[];
}

/** Follows KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-* -> DNAT for one ClusterIP:port. */
export function serviceRules(nat: NatTable, clusterIP: string, port: number): ServiceRules {
  const entry = nat.rules.find((r) => r.chain === "KUBE-SERVICES" && r.dest === clusterIP && r.dport === port && r.target?.startsWith("KUBE-SVC-"));
  return { ...(entry ? { entry, svcChain: entry.target } : {}), endpoints: entry ? endpointsOfChain(nat, entry.target!) : [] };
}

function endpointsOfChain(nat: NatTable, svcChain: string): ServiceEndpointRule[] {
  return nat.rules
    .filter((r) => r.chain === svcChain && r.target?.startsWith("KUBE-SEP-"))
    .map((jump) => {
      const dnat = nat.rules.find((r) => r.chain === jump.target && r.target === "DNAT");
      return {
        chain: jump.target!,
        ...(dnat?.toDestination ? { dnatTo: dnat.toDestination } : {}),
        ...(jump.probability !== undefined ? { probability: jump.probability } : {}),
        ...(dnat?.packets !== undefined ? { packets: dnat.packets } : {}),
      };
    });
}

export interface NodePortRules {
  /** The KUBE-NODEPORTS rule for the port. */
  entry?: NatRule;
  /** KUBE-EXT-... (external traffic is masqueraded there, then handed to the Service chain). */
  extChain?: string;
  svcChain?: string;
  endpoints: ServiceEndpointRule[];
}

/** Follows KUBE-NODEPORTS -> KUBE-EXT-* -> KUBE-SVC-* -> KUBE-SEP-* for one NodePort. */
export function nodePortRules(nat: NatTable, nodePort: number): NodePortRules {
  const entry = nat.rules.find((r) => r.chain === "KUBE-NODEPORTS" && r.dport === nodePort && r.target);
  if (!entry) return { endpoints: [] };
  const ext = entry.target!;
  const svcChain = ext.startsWith("KUBE-SVC-") ? ext : nat.rules.find((r) => r.chain === ext && r.target?.startsWith("KUBE-SVC-"))?.target;
  return { entry, extChain: ext, ...(svcChain ? { svcChain } : {}), endpoints: svcChain ? endpointsOfChain(nat, svcChain) : [] };
}

// ---- tcpdump -nn on the underlay ----

export interface UdpPacket {
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
  /** The VXLAN network identifier (tcpdump decodes UDP 8472 as OTV: "instance N"; 4789 as VXLAN: "vni N"). */
  vni?: number;
  /** The encapsulated packet's summary, e.g. "IP 172.30.1.4 > 172.30.2.5: ICMP echo request, id 7, seq 1, length 64". */
  inner?: string;
}

/** `tcpdump -nn [-l] -i IF udp ...`: the UDP packets, each with the inner packet tcpdump printed under it. */
export function parseTcpdumpUdp(text: string): { packets: UdpPacket[]; captured?: number } {
  const packets: UdpPacket[] = [];
  const head = /^\d{2}:\d{2}:\d{2}\.\d+\s+(?:\S+\s+(?:In|Out|M|B|P)\s+)?IP (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+): (.*)$/;
  for (const line of text.split("\n")) {
    const m = head.exec(line.trimEnd());
    if (m) {
      const vni = /(?:instance|vni) (\d+)/.exec(m[5])?.[1];
      const inline = /\b(IP \d+\.\d+\.\d+\.\d+.*)$/.exec(m[5].replace(/^.*?(?:instance|vni) \d+\s*/, ""))?.[1];
      packets.push({
        src: m[1],
        srcPort: Number(m[2]),
        dst: m[3],
        dstPort: Number(m[4]),
        ...(vni ? { vni: Number(vni) } : {}),
        ...(inline ? { inner: inline } : {}),
      });
    } else if (/^IP \d/.test(line) && packets.length && !packets[packets.length - 1].inner) {
      packets[packets.length - 1].inner = line.trim();
    }
  }
  const captured = /(\d+) packets? captured/.exec(text)?.[1];
  return { packets, ...(captured ? { captured: Number(captured) } : {}) };
}

// ---- ping (iputils or busybox) ----

export interface PingResult {
  transmitted: number;
  received: number;
  ttl?: number;
  avgMs?: number;
}

export function parsePing(text: string): PingResult | undefined {
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(text);
  if (!m) return undefined;
  const ttl = /ttl=(\d+)/.exec(text)?.[1];
  const avg = /= [\d.]+\/([\d.]+)\//.exec(text)?.[1];
  return { transmitted: Number(m[1]), received: Number(m[2]), ...(ttl ? { ttl: Number(ttl) } : {}), ...(avg ? { avgMs: Number(avg) } : {}) };
}

/** ping with every wait bounded: -W per reply. */
export const pingCommand = (address: string, count = 3) => `ping -c ${count} -i 0.2 -W 1 ${address}`;

/**
 * Pings that fill a packet of `mtu` bytes with Don't Fragment set (ICMP 8 + IP 20 of it are headers):
 * they cross only a path whose every hop carries `mtu`. Small pings pass an MTU mismatch; these do not.
 */
export const fullSizePingCommand = (address: string, mtu: number, count = 2) => `ping -c ${count} -i 0.2 -W 1 -M do -s ${mtu - 28} ${address}`;

// ---- dig ----

export interface DigAnswer {
  name: string;
  ttl: number;
  type: string;
  data: string;
}

export interface DigResult {
  /** NOERROR, NXDOMAIN, SERVFAIL, REFUSED; absent when no server answered. */
  status?: string;
  answers: DigAnswer[];
  queryMs?: number;
  /** dig's complaint when no answer came: "communications error to 10.254.0.2#53: timed out". */
  error?: string;
}

export function parseDig(text: string): DigResult {
  const status = /status: ([A-Z]+)/.exec(text)?.[1];
  const answers: DigAnswer[] = [];
  const section = /;; ANSWER SECTION:\n([\s\S]*?)(?:\n\n|$)/.exec(text)?.[1] ?? "";
  for (const line of section.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 5 && !line.startsWith(";")) answers.push({ name: f[0], ttl: Number(f[1]), type: f[3], data: f.slice(4).join(" ") });
  }
  const queryMs = /Query time: (\d+) msec/.exec(text)?.[1];
  const error = /^;; ((?:communications error|connection timed out|no servers could be reached)[^\n]*)/m.exec(text)?.[1];
  return { ...(status ? { status } : {}), answers, ...(queryMs ? { queryMs: Number(queryMs) } : {}), ...(error ? { error } : {}) };
}

/** One try, two seconds: a DNS probe never waits for dig's default 3 x 5 s. */
export const digCommand = (server: string, name: string, type = "A", timeSec = 2) => `dig +time=${timeSec} +tries=1 @${server} ${name} ${type}`;

export function parseResolvConf(text: string): { nameservers: string[]; search: string[] } {
  const nameservers = [...text.matchAll(/^nameserver\s+(\S+)/gm)].map((m) => m[1]);
  const search = /^search\s+(.+)$/m.exec(text)?.[1].trim().split(/\s+/) ?? [];
  return { nameservers, search };
}

// ---- curl ----

/** curl's write-out line after the body. Labelled fields: curl leaves a value empty when there was no connection. */
const CURL_MARK = "k8slab-curl:";
const CURL_WRITE_OUT = `\\n${CURL_MARK} code=%{http_code} remote=%{remote_ip}:%{remote_port} time=%{time_total}\\n`;

/** `pace`: the factor the bounds are stretched by (the nodes' measured pace; a busy emulated CPU answers slower). */
export function curlCommand(url: string, opts: { host?: string; maxTimeSec?: number; discardBody?: boolean; pace?: number } = {}): string {
  const f = opts.pace ?? 1;
  return [
    `curl -sS --connect-timeout ${Math.ceil(2 * f)}`,
    `-m ${Math.ceil((opts.maxTimeSec ?? 5) * f)}`,
    ...(opts.host ? [`-H ${shq(`Host: ${opts.host}`)}`] : []),
    ...(opts.discardBody ? ["-o /dev/null"] : []),
    `-w ${shq(CURL_WRITE_OUT)}`,
    shq(url),
  ].join(" ");
}

export interface CurlResult {
  /** HTTP status; 0 when no response came. */
  status: number;
  /** The peer, ip:port, when a connection was made. */
  remote?: string;
  seconds?: number;
  body: string;
  /** curl's error line, e.g. "curl: (7) Failed to connect to 192.168.0.21 port 80 after 0 ms: Could not connect to server". */
  error?: string;
  exitCode: number;
}

export function parseCurl(exec: { stdout: string; stderr: string; exitCode: number }): CurlResult {
  const lines = exec.stdout.split("\n");
  const at = lines.findLastIndex((l) => l.startsWith(CURL_MARK));
  const m = at >= 0 ? /code=(\d+) remote=(\S*) time=([\d.]+)/.exec(lines[at]) : null;
  const error = /curl: \(\d+\)[^\n]*/.exec(exec.stderr)?.[0];
  return {
    status: Number(m?.[1] ?? 0),
    ...(m && /^\d+\.\d+\.\d+\.\d+:\d+$/.test(m[2]) && !m[2].endsWith(":0") ? { remote: m[2] } : {}),
    ...(m ? { seconds: Number(m[3]) } : {}),
    body: (at >= 0 ? lines.slice(0, at) : lines).join("\n").replace(/\n$/, ""),
    ...(error ? { error } : {}),
    exitCode: exec.exitCode,
  };
}

/** Why curl got no answer, in a packet's terms. */
export function curlFailure(r: CurlResult): string {
  if (r.exitCode === 7) return "connection refused (nothing listens there, or a REJECT rule)";
  if (r.exitCode === 28) return "timed out (packets dropped or unanswered)";
  if (r.exitCode === 124) return "timed out";
  return r.error ?? (r.status ? `HTTP ${r.status}` : `curl exit ${r.exitCode}`);
}

// ---- kubectl ----

/** Tab-separated rows, as the probes' kubectl jsonpath templates print them. */
export function parseRows(text: string): string[][] {
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => l.split("\t"));
}

/** What business-manager answers (workloads/business-manager/server.ts): who served, and on failure the gRPC status. */
export interface BusinessAnswer {
  businessManager?: { pod: string; ip: string; node: string };
  /** GET / and /products/:id: the data-product pod that served the product. */
  dataProduct?: { pod: string; ip: string; node: string } | { target: string; status: string; message?: string };
  product?: { id: string; name?: string };
  ready?: boolean;
  error?: string;
  target?: string;
  grpc?: { code: number; status: string; message: string };
  latencyMs?: number;
}

export function parseBusinessAnswer(body: string): BusinessAnswer | undefined {
  try {
    const v = JSON.parse(body);
    return v && typeof v === "object" ? v : undefined;
  } catch {
    return undefined;
  }
}

// `k8slab trace`: one marked packet (or one short TCP exchange) followed through the lab. Captures
// start on every device it may cross (both nodes' underlay, VTEP and bridge; the sender's and every
// possible receiver's pod eth0 and veth), the packet goes out, the NAT decision is read from conntrack
// and kube-proxy's rules, and the captures tell where it was seen, with its headers as rewritten there.
import { randomInt } from "node:crypto";
import type { Lab } from "../../core/index.ts";
import { UNDERLAY_NIC } from "../../core/names.ts";
import { pause, shq } from "../../core/shell.ts";
import type { Pod } from "../probes/cluster.ts";
import { containerPidScript } from "../probes/live.ts";
import { parseIptablesNat } from "../probes/parse.ts";
import { type Exec, type LabAccess, paceLookup } from "../probes/types.ts";
import { type Place, type Proto, placeName, placeNode, type Target } from "./endpoints.ts";
import { describePacket, innerOf, type Packet, parsePcap } from "./packets.ts";
import { type CaptureSpot, captureFilter, type Mark, type Point, pathPoints, spotsOf } from "./path.ts";

const DIR = "/run/k8slab-trace";
/** A capture never outlives this, whatever happens to the run that started it. */
const CAPTURE_MAX_SEC = 60;
const MARKER = "k8slab-trace";

/** A TCP/UDP connection's addresses as one side sees them. */
export interface Tuple {
  src: string;
  sport: number;
  dst: string;
  dport: number;
}

export interface PointResult extends Point {
  node?: string;
  device: string;
  request: { time: number; headers: string }[];
  reply: { time: number; headers: string }[];
  verdict: "seen" | "request only" | "not seen";
}

export interface Leg {
  name: string;
  from: string;
  to: string;
  points: PointResult[];
}

export interface TraceReport {
  lab: string;
  from: string;
  to: string;
  proto: Proto;
  port?: number;
  startedAt: string;
  seconds: number;
  /** What the sender itself saw (ping's or curl's answer). */
  sent: { where: string; command: string; exitCode: number; output: string };
  /** kube-proxy's choice: the conntrack entry and the KUBE-SVC / KUBE-SEP chains that made it. */
  nat?: { node: string; conntrack: string; rules: string[]; backend?: string };
  legs: Leg[];
  /** Where the request was last seen and where it should have been next, with what the node there says. */
  lost?: { after: string; before: string; state: { command: string; output: string }[] };
  ok: boolean;
  /** Per capture spot, the packets of this trace (for pcapng). */
  captured: { spot: CaptureSpot; packets: Packet[] }[];
}

/** The IP total length of an echo request with `payload` bytes. */
const icmpLength = (payload: number) => payload + 28;

/** Runs a command on a spot's host: its node's agent, or the outside client. */
const onSpotHost = (access: LabAccess, spot: CaptureSpot, command: string, timeoutSec: number): Promise<Exec> =>
  spot.node ? access.onNode(spot.node, command, timeoutSec) : access.fromOutsideClient(`bash -c ${shq(command)}`, timeoutSec);

/** The veth on `pod`'s node whose peer is the pod's eth0. */
async function vethName(access: LabAccess, pod: Pod): Promise<string> {
  const pid = containerPidScript(pod.containerID);
  if (!pid) throw new Error(`${pod.name} has no running container`);
  const r = await access.onNode(
    pod.node,
    // The pod's eth0 names its peer's index (eth0@ifN); /sys would show the host's own eth0, not the pod's.
    `${pid}\nidx=$(nsenter -t "$pid" -n ip -o link show eth0 | sed -n 's/.*@if\\([0-9]*\\):.*/\\1/p') && ip -o link show | sed -n "s/^$idx: \\([^@:]*\\).*/\\1/p"`,
    20,
  );
  const name = r.stdout.trim();
  if (r.exitCode !== 0 || !name) throw new Error(`the host veth of ${pod.name} on ${pod.node}: ${r.stderr.trim() || "not found"}`);
  return name;
}

/**
 * tcpdump writing the spot's packets to a pcap file. --immediate-mode hands each packet over as it
 * arrives: without it they wait in the kernel's ring until a block is retired (a second), and the
 * SIGINT that stops the capture loses those still waiting (shown in test/trace.test.ts).
 */
export function startCapture(spot: CaptureSpot, filter: string, dir = DIR): { start: string; stop: string } {
  const base = `${dir}/${spot.id.replace(/[^A-Za-z0-9.-]+/g, "_")}-${process.pid}`;
  const inPod = spot.pod ? `${containerPidScript(spot.pod.containerID)}\n` : "";
  const enter = spot.pod ? 'nsenter -t "$pid" -n ' : "";
  return {
    start: [
      `mkdir -p ${dir} && rm -f ${base}.*`,
      inPod,
      `setsid timeout ${CAPTURE_MAX_SEC} ${enter}tcpdump -i ${spot.device} -nn -U --immediate-mode -s 262144 -w ${base}.pcap ${shq(filter)} </dev/null >/dev/null 2>${base}.err & echo $! >${base}.pid`,
      `until [[ -e ${base}.err && $(<${base}.err) == *"listening on"* ]]; do kill -0 $(<${base}.pid) 2>/dev/null || { cat ${base}.err >&2; exit 1; }; ${pause(0.1)}; done`,
    ].join("\n"),
    // SIGINT to tcpdump's process group: it writes what it has and ends.
    stop: [
      `kill -INT -- -$(<${base}.pid) 2>/dev/null`,
      `for i in $(seq 50); do kill -0 $(<${base}.pid) 2>/dev/null || break; ${pause(0.1)}; done`,
      `base64 -w0 ${base}.pcap; rm -f ${base}.*`,
    ].join("\n"),
  };
}

/** `n` distinct source ports for a trace's marked connection, from 20000-29999: no port of the lab's is there, and none of the kernel's ephemeral ones. */
export function sourcePorts(n: number): number[] {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(randomInt(20000, 30000));
  return [...ports];
}

/**
 * Sends from the first of `ports` that is free: a port another connection of the sender holds makes curl
 * (exit 45) or dig say "address already in use", and the next one is tried. The port sent from, and its answer.
 */
export async function sendFromFreePort(
  ports: number[],
  send: (port: number) => Promise<{ exitCode: number; stdout: string; stderr: string }>,
): Promise<{ port: number; exitCode: number; output: string }> {
  let last = { port: ports[0], exitCode: -1, output: "" };
  for (const port of ports) {
    const r = await send(port);
    last = { port, exitCode: r.exitCode, output: `${r.stdout}${r.stderr}`.trim() };
    if (!/address (already )?in use/i.test(last.output)) break;
  }
  return last;
}

/** `conntrack -L` lines as their original and reply tuples. */
export function parseConntrack(text: string): { original: Tuple; reply: Tuple; line: string }[] {
  return text
    .split("\n")
    .map((line) => {
      const f = [...line.matchAll(/\b(src|dst|sport|dport)=(\S+)/g)].map((m) => m[2]);
      if (f.length < 8) return undefined;
      const t = (i: number): Tuple => ({ src: f[i], dst: f[i + 1], sport: Number(f[i + 2]), dport: Number(f[i + 3]) });
      return { original: t(0), reply: t(4), line: line.trim() };
    })
    .filter((x): x is { original: Tuple; reply: Tuple; line: string } => !!x);
}

/**
 * The connection as it looks beyond kube-proxy's NAT: after its DNAT and SNAT (the reply tuple
 * reversed), and half-way. A reply on a node's pod bridge, on its way to a client outside, is seen
 * after br_netfilter ran iptables' PREROUTING on the bridged frame: its SNAT already undone
 * (backend -> client), its DNAT not yet (POSTROUTING's, on the way out).
 */
export function natTuples(entry: { original: Tuple; reply: Tuple }): Tuple[] {
  return [reversed(entry.reply), { src: entry.original.src, sport: entry.original.sport, dst: entry.reply.src, dport: entry.reply.sport }];
}

/** Whether a packet's addresses are one of the tuples', either way. */
export const inFlow = (tuples: Tuple[], t: Tuple) => tuples.some((u) => sameTuple(u, t) || sameTuple(reversed(u), t));

const sameTuple = (a: Tuple, b: Tuple) => a.src === b.src && a.dst === b.dst && a.sport === b.sport && a.dport === b.dport;
const reversed = (t: Tuple): Tuple => ({ src: t.dst, dst: t.src, sport: t.dport, dport: t.sport });

export interface TraceInput {
  lab: Lab;
  from: Place;
  fromText: string;
  toText: string;
  target: Target;
  proto: Proto;
  /** The port sent to (TCP/UDP). */
  port?: number;
  /** The backends' port after DNAT (a Service's targetPort). */
  backendPort?: number;
}

export async function runTrace(access: LabAccess, input: TraceInput): Promise<TraceReport> {
  const { lab, from, target, proto } = input;
  const started = Date.now();
  const s = spotsOf(lab);
  const { backend, port: tunnelPort } = lab.pods.flannel;
  const tunnel = backend !== "host-gw" && tunnelPort !== undefined ? { kind: backend, port: tunnelPort } : undefined;
  const id = `${Date.now().toString(36)}${randomInt(1000)}`;
  const payload = randomInt(900, 1300);
  // The marked source port, and two spares for when it is taken (curl's exit 45). Below Linux's
  // ephemeral range (32768-60999): a port in it may be held by any connection of the sender's namespace.
  const spares = sourcePorts(3);
  let sport = spares[0];
  const mark: Mark =
    proto === "icmp"
      ? { proto, ipLength: icmpLength(payload) }
      : { proto, ports: [...new Set([...spares, input.port!, ...(input.backendPort ? [input.backendPort] : [])])] };

  // Every pod the packet may leave or reach, with its host veth.
  const pods = [
    ...(from.kind === "pod" ? [from.pod] : []),
    ...target.candidates.flatMap((c) => (c.kind === "pod" ? [c.pod] : [])),
    ...(target.upstreams ?? []),
  ].filter((p, i, all) => all.findIndex((q) => q.name === p.name) === i);
  const veths = new Map<string, string>(await Promise.all(pods.map(async (p) => [p.name, await vethName(access, p)] as const)));
  const vethOf = (p: Pod) => veths.get(p.name)!;
  const spots: CaptureSpot[] = [
    ...lab.nodes.flatMap((n) => [s.underlay(n.name), s.vtep(n.name), s.bridge(n.name)].filter((x): x is CaptureSpot => !!x)),
    ...pods.flatMap((p) => [s.podEth0(p), s.veth(p, vethOf(p))]),
    ...(from.kind === "client" ? [s.client()] : []),
  ];
  // The tunnel crosses only the underlay NIC.
  const captures = spots.map((spot) => ({ spot, ...startCapture(spot, captureFilter(mark, spot.device === UNDERLAY_NIC && !spot.pod ? tunnel : undefined)) }));
  const startedCaptures = await Promise.all(captures.map((c) => onSpotHost(access, c.spot, c.start, 30)));
  const failed = startedCaptures.findIndex((r) => r.exitCode !== 0);
  const pace = await paceLookup(access)();
  let sent: TraceReport["sent"] = { where: placeName(from), command: "", exitCode: -1, output: "" };
  let natRead: { node: string; conntrack: Exec; nat: Exec } | undefined;
  let stopped: Exec[] = [];
  try {
    if (failed >= 0) throw new Error(`the capture on ${captures[failed].spot.id} did not start: ${startedCaptures[failed].stderr.trim()}`);
    const url = `http://${target.address}:${input.port}/?${MARKER}=${id}`;
    const commandFrom = (port: number) =>
      proto === "icmp"
        ? `ping -c 1 -W 3 -s ${payload} ${target.address}`
        : proto === "tcp"
          ? `curl -sS -o /dev/null -w '%{http_code}' -m 5 --local-port ${port} ${target.hostHeader ? `-H ${shq(`Host: ${target.hostHeader}`)} ` : ""}${shq(url)}`
          : `dig +time=2 +tries=1 -b 0.0.0.0#${port} @${target.address} -p ${input.port} kubernetes.default.svc.${lab.services.clusterDomain}`;
    const send = (command: string) =>
      from.kind === "pod"
        ? access.onNode(
            from.pod.node,
            proto === "udp"
              ? `${containerPidScript(from.pod.containerID)}\nnsenter -t "$pid" -m -n -- ${command}`
              : `${containerPidScript(from.pod.containerID)}\nnsenter -t "$pid" -n -- ${command}`,
            15,
          )
        : from.kind === "node"
          ? access.onNode(from.node.name, command, 15)
          : access.fromOutsideClient(command, 15);
    const tried = await sendFromFreePort(spares, (port) => send(commandFrom(port)));
    sport = tried.port;
    sent = { where: placeName(from), command: commandFrom(tried.port), exitCode: tried.exitCode, output: tried.output };
    const natNode = target.natOn === "sender" ? placeNode(from) : target.natOn;
    if (natNode && proto !== "icmp") {
      const [conntrack, nat] = await Promise.all([
        access.onNode(natNode, `conntrack -L -p ${proto} --orig-port-src ${sport} 2>/dev/null`, 15),
        access.onNode(natNode, "iptables-save -t nat -c", 15),
      ]);
      natRead = { node: natNode, conntrack, nat };
    }
    // the last reply's way back, on the slowest node's time
    await new Promise((r2) => setTimeout(r2, 1000 * pace));
  } finally {
    stopped = await Promise.all(captures.map((c) => onSpotHost(access, c.spot, c.stop, 20)));
  }
  const captured = captures.map((c, i) => ({ spot: c.spot, packets: parsePcap(Buffer.from(stopped[i].stdout.trim(), "base64"), tunnel) }));

  // Which packets are this trace's: the marked ICMP length, or the TCP/UDP tuples before and after NAT.
  const senderIP = from.kind === "pod" ? from.pod.ip : from.kind === "node" ? from.node.address : lab.lan.gateway;
  const tuples: Tuple[] = [];
  let nat: TraceReport["nat"];
  let backendIP: string | undefined;
  if (proto !== "icmp") {
    tuples.push({ src: senderIP, sport, dst: target.address, dport: input.port! });
    if (natRead) {
      const entry = parseConntrack(natRead.conntrack.stdout).find((e) => e.original.sport === sport);
      if (entry) {
        tuples.push(...natTuples(entry));
        backendIP = entry.reply.src;
        const table = parseIptablesNat(natRead.nat.stdout);
        const to = `${entry.reply.src}:${entry.reply.sport}`;
        const sep = table.rules.find((r) => r.target === "DNAT" && r.toDestination === to);
        const svc = sep && table.rules.find((r) => r.target === sep.chain && r.chain.startsWith("KUBE-SVC-"));
        nat = {
          node: natRead.node,
          conntrack: entry.line,
          rules: [svc?.text, sep?.text].filter((x): x is string => !!x),
          backend: to,
        };
      } else {
        nat = { node: natRead.node, conntrack: natRead.conntrack.stdout.trim() || "(no conntrack entry for the connection)", rules: [] };
      }
    }
  }
  const upstream = target.upstreams
    ? upstreamTuple(
        captured.flatMap((c) => c.packets),
        id,
      )
    : undefined;
  if (upstream) tuples.push(upstream);
  const ours = (p: Packet, tuple?: Tuple) => {
    const ip = innerOf(p);
    if (proto === "icmp") return ip.proto === 1 && ip.length === mark.ipLength;
    const t = { src: ip.src, sport: ip.sport ?? -1, dst: ip.dst, dport: ip.dport ?? -1 };
    return inFlow(tuple ? [tuple] : tuples, t);
  };

  // The legs, in path order; the receiver is the backend the NAT chose, or the only one there is.
  const receiver: Place | undefined =
    target.candidates.length === 1 ? target.candidates[0] : target.candidates.find((c) => c.kind === "pod" && c.pod.ip === backendIP);
  const legs: Leg[] = [];
  /** `towards`: the addresses a request of this leg is sent to (before and after DNAT); replies come back from them. */
  const leg = (name: string, a: Place, b: Place | undefined, towards: string[], tuple?: Tuple, entry?: string): void => {
    if (!b) return;
    const points = pathPoints(lab, a, b, vethOf, entry).map((point): PointResult => {
      const spot = spots.find((x) => x.id === point.spot)!;
      const packets = (captured.find((c) => c.spot.id === point.spot)?.packets ?? []).filter((p) => !!p.encap === point.encap && ours(p, tuple));
      // A request travels towards the receiver: its destination is the address sent to, or the backend after DNAT.
      const isRequest = (p: Packet) => (proto === "icmp" ? innerOf(p).icmpType === 8 : towards.includes(innerOf(p).dst));
      const line = (p: Packet) => ({ time: p.time, headers: describePacket(p) });
      const request = packets.filter(isRequest).map(line);
      const reply = packets.filter((p) => !isRequest(p)).map(line);
      return {
        ...point,
        node: spot.node,
        device: spot.device,
        request,
        reply,
        verdict: request.length ? (reply.length ? "seen" : "request only") : "not seen",
      };
    });
    legs.push({ name, from: placeName(a), to: placeName(b), points });
  };
  if (target.upstreams) {
    const nodePlace = target.candidates[0];
    leg("client -> nginx", from, nodePlace, [target.address], tuples[0], placeNode(nodePlace));
    const pod = target.upstreams.find((p) => p.ip === upstream?.dst);
    leg("nginx -> backend", nodePlace, pod ? { kind: "pod", pod } : undefined, upstream ? [upstream.dst] : [], upstream);
  } else {
    const entry = target.natOn && target.natOn !== "sender" ? target.natOn : placeNode(receiver ?? from);
    leg("request", from, receiver, [target.address, ...(backendIP ? [backendIP] : [])], undefined, entry);
  }

  // The first point each leg's request did not reach: what the node there says about it.
  let lost: TraceReport["lost"];
  const allPoints = legs.flatMap((l) => l.points);
  const gap = allPoints.findIndex((p) => p.verdict === "not seen");
  if (gap >= 0 || !receiver) {
    const before = allPoints[gap] ?? allPoints[allPoints.length - 1];
    const after = gap > 0 ? allPoints[gap - 1] : undefined;
    const node = before?.node ?? after?.node;
    const dst = receiver?.kind === "pod" ? receiver.pod.ip : target.address;
    const state = node
      ? await access.onNodeSteps(
          node,
          [
            `ip route get ${dst}`,
            "iptables-save -t filter -c | grep -E -- '-j (DROP|REJECT)' || echo '(no DROP or REJECT rule)'",
            `bridge fdb show dev ${lab.pods.flannel.device}`,
            `ip -s link show ${before?.device ?? "eth0"}`,
          ],
          20,
        )
      : [];
    lost = {
      after: after ? `${after.spot} (${after.role})` : "the sender",
      before: before ? `${before.spot} (${before.role})` : "the receiver",
      state: state.map((e) => ({ command: `${node}: ${e.command}`, output: `${e.stdout}${e.stderr}`.trim() })),
    };
  }
  return {
    lab: lab.name,
    from: input.fromText,
    to: input.toText,
    proto,
    ...(input.port ? { port: input.port } : {}),
    startedAt: new Date(started).toISOString(),
    seconds: Math.round((Date.now() - started) / 100) / 10,
    sent,
    ...(nat ? { nat } : {}),
    legs,
    ...(lost ? { lost } : {}),
    ok: !lost && legs.length > 0 && legs.every((l) => l.points.every((p) => p.verdict === "seen")),
    captured: captured.map((c) => ({ spot: c.spot, packets: c.packets.filter((p) => ours(p)) })),
  };
}

/** nginx's connection to the backend: the packet whose payload carries this trace's marker, sent from a node's address. */
function upstreamTuple(packets: Packet[], id: string): Tuple | undefined {
  const needle = Buffer.from(`${MARKER}=${id}`);
  // The first request with the marker that is not the client's own (its destination is a pod, not port 80 of a node).
  const hits = packets.filter((p) => p.raw.includes(needle)).map((p) => innerOf(p));
  const up = hits.find((ip) => ip.dport !== undefined && hits[0] && ip.src !== hits[0].src);
  return up && up.sport !== undefined && up.dport !== undefined ? { src: up.src, sport: up.sport, dst: up.dst, dport: up.dport } : undefined;
}

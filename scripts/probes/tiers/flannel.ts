// Tier 2, flannel: etcd's subnet leases and, per backend, what each node's kernel holds for them:
// vxlan flannel.<VNI> and per peer a route, a neighbour and an FDB entry; host-gw a route per peer via
// its LAN address; udp the flannel0 TUN device, the pod network's route into it and flanneld's socket.
import type { LabNode } from "../../../core/index.ts";
import { FLANNEL_ETCD_PREFIX, UNDERLAY_NIC } from "../../../core/names.ts";
import { etcdctlCommand } from "../../../core/node.ts";
import { TIMEOUT } from "../contract.ts";
import { type FlannelLease, parseFdb, parseFlannelLeases, parseLinks, parseNeighbours, parseRoutes, parseVxlanLink, type VxlanDevice } from "../parse.ts";
import { broken, type ClusterReader, type ProbeContext, type Tier } from "../types.ts";

// Within TIMEOUT.read: etcdctl's defaults (2 s to dial, 5 s per request) cut the read off when it
// started beside the run's other reads on a busy control-plane node under TCG ("context deadline exceeded");
// on a slower node (a young lab on a slow host: 152 ms a process) 10 s was not enough either, so both follow its pace.
export const leasesCommand = async (ctx: ClusterReader) => {
  const f = await ctx.paceOf(ctx.lab.controlPlane.name);
  return `${etcdctlCommand(ctx.lab)} --dial-timeout=${Math.ceil(8 * f)}s --command-timeout=${Math.ceil(10 * f)}s get --prefix ${FLANNEL_ETCD_PREFIX}/subnets`;
};

/** What a node's kernel holds for the overlay, read in one shell: the backend's device (none for host-gw), routes, and vxlan's neighbours and FDB. */
async function readNode(ctx: ClusterReader, node: LabNode) {
  const { backend, device: dev, port } = ctx.lab.pods.flannel;
  const commands = [
    "ip -j route show",
    "systemctl is-active flanneld",
    ...(dev ? [`ip -d -j link show ${dev}`] : []),
    ...(backend === "vxlan" ? [`ip -j neigh show dev ${dev}`, `bridge -j fdb show dev ${dev}`] : []),
    ...(backend === "udp" ? [`ss -H -ulpn sport = :${port}`] : []),
  ];
  const [routes, flanneld, link, third, fourth] = await ctx.onNodeSteps(node.name, commands, TIMEOUT.read);
  return {
    routes: parseRoutes(routes.stdout),
    flanneld: flanneld.stdout.trim() || "unknown",
    device: link?.exitCode === 0 ? (backend === "vxlan" ? parseVxlanLink(link.stdout) : parseLinks(link.stdout)[0]) : undefined,
    neighbours: backend === "vxlan" && third?.exitCode === 0 ? parseNeighbours(third.stdout) : [],
    fdb: backend === "vxlan" && fourth?.exitCode === 0 ? parseFdb(fourth.stdout) : [],
    /** udp: flanneld's socket on the backend's port. */
    socket: backend === "udp" ? (third?.stdout.trim() ?? "") : undefined,
  };
}

const network = (subnet: string) => subnet.split("/")[0];

/** etcd's leases and every node's overlay state: reads only, made while the underlay is probed. */
const lookups = (ctx: ClusterReader) =>
  Promise.all([
    leasesCommand(ctx).then((command) => ctx.onNode(ctx.lab.controlPlane.name, command, TIMEOUT.read)),
    Promise.all(ctx.lab.nodes.map((n) => readNode(ctx, n))),
  ]);

export const flannel: Tier = {
  id: "flannel",
  title: "etcd's subnet leases, and each node's flannel device and routes (and vxlan's neighbours and FDB) agree",
  lookups,
  async run(ctx) {
    const { lab } = ctx;
    const { backend, device: dev, vni, port } = lab.pods.flannel;
    const [etcd, nodes] = await lookups(ctx);
    if (etcd.exitCode !== 0) {
      broken(
        "etcd leases",
        (etcd.stderr.trim() || `etcdctl exit ${etcd.exitCode}`).split("\n").pop()!,
        `etcdctl on ${lab.controlPlane.name} could not read ${FLANNEL_ETCD_PREFIX}/subnets: \`systemctl status etcd\` there`,
      );
    }
    const leases = parseFlannelLeases(etcd.stdout);
    const leaseOf = new Map<string, FlannelLease>();
    // flannel's udp backend leases with its public IP only (pkg/backend/udp/udp_amd64.go): no BackendType.
    const typeOf = (l: FlannelLease) =>
      l.backendType || (backend === "udp" ? "udp (the lease names no backend: flannel's udp backend writes none)" : "no backend type");
    const typeFits = (l: FlannelLease) => l.backendType === backend || (backend === "udp" && !l.backendType);
    for (const node of lab.nodes) {
      const lease = leases.find((l) => l.publicIP === node.address);
      if (lease) leaseOf.set(node.name, lease);
      ctx.hop(
        `lease ${node.name}`,
        lease
          ? `${lease.subnet} -> ${lease.publicIP}, ${typeOf(lease)}${lease.vni !== undefined ? ` VNI ${lease.vni}` : ""}${lease.vtepMAC ? `, VTEP MAC ${lease.vtepMAC}` : ""}${lease.subnet === node.podSubnet ? "" : ` (the lab expects ${node.podSubnet})`}`
          : `no lease in etcd for ${node.address}`,
        !!lease && typeFits(lease) && (backend !== "vxlan" || (lease.vni === vni && !!lease.vtepMAC)),
        `flanneld on ${node.name} writes its lease at start: \`systemctl status flanneld\` and \`journalctl -u flanneld\` there (it needs etcd at ${lab.controlPlane.address})`,
      );
    }

    lab.nodes.forEach((node, i) => {
      const seen = nodes[i];
      const restart = `flanneld on ${node.name} programs this from the leases${seen.flanneld === "active" ? "" : `, and it is ${seen.flanneld}`}: \`systemctl restart flanneld\` on ${node.name}`;
      const remotes = lab.nodes.filter((r) => r !== node).map((r) => ({ remote: r, lease: leaseOf.get(r.name) }));
      if (backend === "vxlan") vxlanHops(ctx, node, seen, leaseOf.get(node.name), remotes, restart);
      if (backend === "host-gw") {
        // No device, no encapsulation: each peer's pods are a route via that peer's own LAN address.
        for (const { remote, lease } of remotes) {
          if (!lease) continue; // its lease hop already failed
          const route = seen.routes.find((r) => r.dst === lease.subnet);
          ctx.hop(
            `${node.name} route to ${remote.name}'s pods`,
            route ? `${route.dst} via ${route.gateway ?? "(none)"} dev ${route.dev}` : `no route for ${lease.subnet} via ${lease.publicIP} dev ${UNDERLAY_NIC}`,
            !!route && route.gateway === lease.publicIP && route.dev === UNDERLAY_NIC,
            restart,
          );
        }
      }
      if (backend === "udp") {
        // flannel0 is a TUN device: the kernel hands every pod packet for another node to flanneld,
        // which sends it in a UDP datagram to the peer's flanneld on the backend's port.
        const d = seen.device;
        ctx.hop(
          `${node.name} ${dev}`,
          d ? `${d.name} MTU ${d.mtu}${d.up ? "" : ", down"}${d.mtu === lab.pods.mtu ? "" : `: MTU ${d.mtu}, not ${lab.pods.mtu}`}` : "missing",
          !!d && d.up && d.mtu === lab.pods.mtu,
          restart,
        );
        const route = seen.routes.find((r) => r.dst === lab.pods.cidr && r.dev === dev);
        ctx.hop(
          `${node.name} route to the pod network`,
          route ? `${route.dst} dev ${route.dev}` : `no route for ${lab.pods.cidr} dev ${dev}`,
          !!route,
          restart,
        );
        ctx.hop(
          `${node.name} flanneld's UDP ${port} socket`,
          seen.socket ? seen.socket.replace(/\s+/g, " ") : `nothing listens on UDP ${port}`,
          !!seen.socket && /flanneld/.test(seen.socket),
          restart,
        );
      }
      ctx.hop(
        `${node.name} flanneld`,
        seen.flanneld,
        seen.flanneld === "active",
        `\`systemctl start flanneld\` on ${node.name}; \`journalctl -u flanneld\` says why it stopped`,
      );
    });
  },
};

type NodeState = Awaited<ReturnType<typeof readNode>>;

/** vxlan: flannel.<VNI> as the lease says, and per peer one route, one neighbour and one FDB entry; entries no lease explains. */
function vxlanHops(
  ctx: ProbeContext,
  node: LabNode,
  seen: NodeState,
  own: FlannelLease | undefined,
  remotes: { remote: LabNode; lease?: FlannelLease }[],
  restart: string,
) {
  const { lab } = ctx;
  const { device: dev, vni, port } = lab.pods.flannel;
  const d = seen.device as VxlanDevice | undefined;
  const routes = seen.routes.filter((r) => r.dev === dev);
  const problems = d
    ? [
        d.vni !== vni && `VNI ${d.vni}, not ${vni}`,
        d.port !== port && `port ${d.port}, not ${port}`,
        d.mtu !== lab.pods.mtu && `MTU ${d.mtu}, not ${lab.pods.mtu}`,
        d.local !== node.address && `local ${d.local}, not ${node.address}`,
        !d.up && "down",
        own?.vtepMAC && d.mac !== own.vtepMAC && `MAC ${d.mac}, but its lease says ${own.vtepMAC}`,
      ].filter(Boolean)
    : [];
  ctx.hop(
    `${node.name} ${dev}`,
    d
      ? `VNI ${d.vni}, UDP ${d.port}, MTU ${d.mtu}, local ${d.local} on ${d.dev}, VTEP MAC ${d.mac}${problems.length ? `: ${problems.join("; ")}` : ""}`
      : "missing",
    !!d && problems.length === 0,
    restart,
  );
  for (const { remote, lease } of remotes) {
    if (!lease?.vtepMAC) continue; // its lease hop already failed
    const gw = network(lease.subnet);
    const route = routes.find((r) => r.dst === lease.subnet);
    ctx.hop(
      `${node.name} route to ${remote.name}'s pods`,
      route
        ? `${route.dst} via ${route.gateway} dev ${route.dev}${route.flags.includes("onlink") ? " onlink" : ""}`
        : `no route for ${lease.subnet} via ${gw} dev ${dev}`,
      !!route && route.gateway === gw && route.flags.includes("onlink"),
      restart,
    );
    const neighbour = seen.neighbours.find((n) => n.dst === gw);
    ctx.hop(
      `${node.name} neighbour for ${remote.name}'s VTEP`,
      neighbour ? `${gw} lladdr ${neighbour.mac} ${neighbour.state.join(",")}` : `no entry: ${gw} should be ${lease.vtepMAC} PERMANENT`,
      !!neighbour && neighbour.mac === lease.vtepMAC && neighbour.state.includes("PERMANENT"),
      restart,
    );
    const fdb = seen.fdb.find((e) => e.mac === lease.vtepMAC);
    ctx.hop(
      `${node.name} FDB entry for ${remote.name}'s VTEP`,
      fdb ? `${fdb.mac} dst ${fdb.dst} ${fdb.state}` : `missing: ${lease.vtepMAC} should go to dst ${lease.publicIP}`,
      !!fdb && fdb.dst === lease.publicIP,
      restart,
    );
  }
  // Entries no lease explains: left over from an old VTEP MAC or a node that left.
  const known = remotes.map((r) => r.lease).filter((l): l is FlannelLease => !!l);
  const stale = [
    ...routes.filter((r) => !known.some((l) => l.subnet === r.dst)).map((r) => `route ${r.dst}`),
    ...seen.neighbours.filter((n) => !known.some((l) => network(l.subnet) === n.dst && l.vtepMAC === n.mac)).map((n) => `neighbour ${n.dst} ${n.mac}`),
    ...seen.fdb.filter((e) => !known.some((l) => l.vtepMAC === e.mac)).map((e) => `FDB ${e.mac} dst ${e.dst}`),
  ];
  // Reported, not failed: no lease points at them, so no packet uses them (flanneld adds the
  // entries for a node's new VTEP MAC after a reboot but never removes the old ones).
  if (stale.length) {
    ctx.hop(
      `${node.name} stale entries`,
      `${stale.join("; ")}: no lease points here, so no packet uses them; \`bridge fdb del\` / \`ip neigh del\` / \`ip route del\` on ${node.name} removes them`,
      true,
    );
  }
}

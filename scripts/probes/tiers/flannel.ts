// Tier 2, flannel: etcd's subnet leases, flannel.1 on every node, and per remote node one route, one neighbour and one FDB entry, all agreeing.
import type { LabNode } from "../../../core/index.ts";
import { FLANNEL_ETCD_PREFIX } from "../../../core/names.ts";
import { etcdctlCommand } from "../../../core/node.ts";
import { TIMEOUT } from "../contract.ts";
import { type FlannelLease, parseFdb, parseFlannelLeases, parseNeighbours, parseRoutes, parseVxlanLink } from "../parse.ts";
import { broken, type ClusterReader, type Tier } from "../types.ts";

// Within TIMEOUT.read: etcdctl's defaults (2 s to dial, 5 s per request) cut the read off when it
// started beside the run's other reads on a busy control-plane node under TCG ("context deadline exceeded").
export const leasesCommand = (ctx: ClusterReader) =>
  `${etcdctlCommand(ctx.lab)} --dial-timeout=8s --command-timeout=10s get --prefix ${FLANNEL_ETCD_PREFIX}/subnets`;

/** What a node's kernel holds for the overlay, read in one shell. */
async function readNode(ctx: ClusterReader, node: LabNode) {
  const dev = ctx.lab.pods.flannel.device;
  const [link, routes, neighbours, fdb, flanneld] = await ctx.onNodeSteps(
    node.name,
    [`ip -d -j link show ${dev}`, "ip -j route show", `ip -j neigh show dev ${dev}`, `bridge -j fdb show dev ${dev}`, "systemctl is-active flanneld"],
    TIMEOUT.read,
  );
  return {
    device: link.exitCode === 0 ? parseVxlanLink(link.stdout) : undefined,
    routes: parseRoutes(routes.stdout).filter((r) => r.dev === dev),
    neighbours: neighbours.exitCode === 0 ? parseNeighbours(neighbours.stdout) : [],
    fdb: fdb.exitCode === 0 ? parseFdb(fdb.stdout) : [],
    flanneld: flanneld.stdout.trim() || "unknown",
  };
}

const network = (subnet: string) => subnet.split("/")[0];

/** etcd's leases and every node's overlay state: reads only, made while the underlay is probed. */
const lookups = (ctx: ClusterReader) =>
  Promise.all([ctx.onNode(ctx.lab.controlPlane.name, leasesCommand(ctx), TIMEOUT.read), Promise.all(ctx.lab.nodes.map((n) => readNode(ctx, n)))]);

export const flannel: Tier = {
  id: "flannel",
  title: "etcd's subnet leases, flannel.1, and each node's routes, neighbours and FDB entries agree",
  lookups,
  async run(ctx) {
    const { lab } = ctx;
    const { device: dev, vni, port } = lab.pods.flannel;
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
    for (const node of lab.nodes) {
      const lease = leases.find((l) => l.publicIP === node.address);
      if (lease) leaseOf.set(node.name, lease);
      ctx.hop(
        `lease ${node.name}`,
        lease
          ? `${lease.subnet} -> ${lease.publicIP}, ${lease.backendType} VNI ${lease.vni}, VTEP MAC ${lease.vtepMAC}${lease.subnet === node.podSubnet ? "" : ` (the lab expects ${node.podSubnet})`}`
          : `no lease in etcd for ${node.address}`,
        !!lease && lease.backendType === "vxlan" && lease.vni === vni && !!lease.vtepMAC,
        `flanneld on ${node.name} writes its lease at start: \`systemctl status flanneld\` and \`journalctl -u flanneld\` there (it needs etcd at ${lab.controlPlane.address})`,
      );
    }

    lab.nodes.forEach((node, i) => {
      const seen = nodes[i];
      const restart = `flanneld on ${node.name} programs this from the leases${seen.flanneld === "active" ? "" : `, and it is ${seen.flanneld}`}: \`systemctl restart flanneld\` on ${node.name}`;
      const d = seen.device;
      const own = leaseOf.get(node.name);
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
      for (const remote of lab.nodes.filter((r) => r !== node)) {
        const lease = leaseOf.get(remote.name);
        if (!lease?.vtepMAC) continue; // its lease hop already failed
        const gw = network(lease.subnet);
        const route = seen.routes.find((r) => r.dst === lease.subnet);
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
      const remotes = lab.nodes
        .filter((r) => r !== node)
        .map((r) => leaseOf.get(r.name))
        .filter((l): l is FlannelLease => !!l);
      const stale = [
        ...seen.routes.filter((r) => !remotes.some((l) => l.subnet === r.dst)).map((r) => `route ${r.dst}`),
        ...seen.neighbours.filter((n) => !remotes.some((l) => network(l.subnet) === n.dst && l.vtepMAC === n.mac)).map((n) => `neighbour ${n.dst} ${n.mac}`),
        ...seen.fdb.filter((e) => !remotes.some((l) => l.vtepMAC === e.mac)).map((e) => `FDB ${e.mac} dst ${e.dst}`),
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
      ctx.hop(
        `${node.name} flanneld`,
        seen.flanneld,
        seen.flanneld === "active",
        `\`systemctl start flanneld\` on ${node.name}; \`journalctl -u flanneld\` says why it stopped`,
      );
    });
  },
};

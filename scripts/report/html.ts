// One self-contained HTML page for a probe run or a trace: the lab's topology drawn from the lab file
// and live values (nodes, bridges, VTEPs, pod subnets, pods, Services, ingress), each element coloured
// by the verdict of the tier (or trace point) it stands for; every tier, hop and piece of evidence a
// click away. No network access needed to view it: no external script, font or stylesheet. Pure.
import type { Lab } from "../../core/index.ts";
import { UNDERLAY_NIC } from "../../core/names.ts";
import type { TierId } from "../probes/contract.ts";
import type { ProbeReport, Verdict } from "../probes/types.ts";
import type { TraceReport } from "../trace/run.ts";

/** Values read from the live lab; each is optional (the page shows what was read). */
export interface LiveTopology {
  vtepMac?: Record<string, string>;
  pods?: { name: string; ip: string; node: string }[];
  services?: { name: string; namespace: string; clusterIP: string; ports: string }[];
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const COLOR: Record<Verdict | "none", string> = {
  pass: "#2e7d32",
  fail: "#c62828",
  inconclusive: "#ef6c00",
  blocked: "#757575",
  skipped: "#9e9e9e",
  none: "#90a4ae",
};

/** Which drawn element each tier stands for. */
const TIER_OF = {
  lan: "underlay",
  vtep: "flannel",
  bridge: "pod-same-node",
  overlay: "pod-cross-node",
  services: "service",
  dns: "dns",
  nodeport: "nodeport",
  ingress: "ingress",
  flow: "business-flow",
} as const satisfies Record<string, TierId>;

interface Page {
  title: string;
  lab: Lab;
  live: LiveTopology;
  verdictOf: (tier: TierId) => Verdict | "none";
  /** Trace points by "node/device": their colour. */
  pointColor?: Map<string, string>;
  body: string;
}

function topologySvg(p: Page): string {
  const { lab, live } = p;
  const colW = 340;
  const width = 60 + lab.nodes.length * (colW + 30);
  const tierColor = (key: keyof typeof TIER_OF) => COLOR[p.verdictOf(TIER_OF[key])];
  const deviceColor = (node: string, device: string, fallback: string) => p.pointColor?.get(`${node}/${device}`) ?? fallback;
  const box = (x: number, y: number, w: number, h: number, stroke: string, label: string, sub: string, tier?: TierId, id?: string) =>
    `<g class="el"${tier ? ` data-tier="${tier}"` : ""}${id ? ` id="${esc(id)}"` : ""}><rect x="${x}" y="${y}" width="${w}" height="${h}" rx="6" fill="#fff" stroke="${stroke}" stroke-width="3"/>` +
    `<text x="${x + 8}" y="${y + 18}" class="t">${esc(label)}</text><text x="${x + 8}" y="${y + 34}" class="s">${esc(sub)}</text></g>`;
  const parts: string[] = [];
  // The outside client and the LAN.
  parts.push(box(20, 10, 250, 44, COLOR.none, "client (outside)", `${lab.lan.gateway} on the lab LAN, netns ${lab.netns}`, undefined, "client/lan0"));
  parts.push(
    `<g class="el" data-tier="underlay"><line x1="30" y1="80" x2="${width - 30}" y2="80" stroke="${tierColor("lan")}" stroke-width="5"/><text x="${width - 250}" y="72" class="s">LAN ${esc(lab.lan.cidr)} (underlay)</text></g>`,
  );
  const podsOn = (node: string) => (live.pods ?? []).filter((q) => q.node === node);
  // Every node's box as tall as the fullest one's, so their NodePort and ingress lines align.
  const h = 300 + Math.max(0, ...lab.nodes.map((n) => podsOn(n.name).length)) * 16;
  lab.nodes.forEach((n, i) => {
    const x = 30 + i * (colW + 30);
    const y = 100;
    const pods = podsOn(n.name);
    parts.push(`<line x1="${x + colW / 2}" y1="80" x2="${x + colW / 2}" y2="${y}" stroke="${tierColor("lan")}" stroke-width="3"/>`);
    parts.push(
      `<g id="node-${esc(n.name)}"><rect x="${x}" y="${y}" width="${colW}" height="${h}" rx="10" fill="#eceff1" stroke="#455a64"/>` +
        `<text x="${x + 10}" y="${y + 22}" class="n">${esc(n.name)}</text><text x="${x + 10}" y="${y + 40}" class="s">${esc(n.roles.join(", "))}; pods ${esc(n.podSubnet)}</text></g>`,
    );
    parts.push(
      box(
        x + 10,
        y + 50,
        colW - 20,
        44,
        deviceColor(n.name, UNDERLAY_NIC, tierColor("lan")),
        `${UNDERLAY_NIC} ${n.address}`,
        "the node's LAN NIC: VXLAN crosses it",
        "underlay",
        `${n.name}/${UNDERLAY_NIC}`,
      ),
    );
    const { backend, device: dev, vni, port } = lab.pods.flannel;
    parts.push(
      dev
        ? box(
            x + 10,
            y + 104,
            colW - 20,
            44,
            deviceColor(n.name, dev, tierColor("vtep")),
            `${dev} (${backend === "vxlan" ? "VTEP" : "TUN, flanneld"})`,
            `${backend === "vxlan" ? `VNI ${vni}, ` : ""}UDP ${port}, MTU ${lab.pods.mtu}${live.vtepMac?.[n.name] ? `, ${live.vtepMac[n.name]}` : ""}`,
            "flannel",
            `${n.name}/${dev}`,
          )
        : box(x + 10, y + 104, colW - 20, 44, tierColor("vtep"), "host-gw: no flannel device", "each peer's pods: a route via its LAN address", "flannel"),
    );
    const gw = n.podSubnet.replace(/\.0\/\d+$/, ".1");
    parts.push(
      box(
        x + 10,
        y + 158,
        colW - 20,
        44,
        deviceColor(n.name, lab.pods.bridge, tierColor("bridge")),
        `${lab.pods.bridge} ${gw}`,
        "the pods' bridge and gateway",
        "pod-same-node",
        `${n.name}/${lab.pods.bridge}`,
      ),
    );
    parts.push(`<text x="${x + 12}" y="${y + 222}" class="s">pods (veth pairs on ${esc(lab.pods.bridge)}):</text>`);
    parts.push(...pods.map((q, j) => `<text x="${x + 20}" y="${y + 240 + j * 16}" class="p">${esc(q.name)} ${esc(q.ip)}</text>`));
    parts.push(
      `<g class="el" data-tier="nodeport"><text x="${x + 12}" y="${y + h - 30}" class="s" fill="${tierColor("nodeport")}">NodePort :${lab.workloads.businessManager.nodePort}</text></g>` +
        `<g class="el" data-tier="ingress"><text x="${x + 150}" y="${y + h - 30}" class="s" fill="${tierColor("ingress")}">nginx :80 (${esc(lab.ingress.host)})</text></g>`,
    );
  });
  // The overlay between the VTEPs.
  if (lab.nodes.length > 1) {
    const y = 100 + 126;
    parts.push(
      `<g class="el" data-tier="pod-cross-node"><line x1="${30 + colW - 10}" y1="${y}" x2="${30 + colW + 40}" y2="${y}" stroke="${tierColor("overlay")}" stroke-width="5" stroke-dasharray="8 4"/></g>`,
    );
  }
  // Services and DNS under the nodes, as many to a row as the drawing is wide.
  const services = live.services ?? [];
  const sy = 100 + h + 20;
  const perRow = Math.max(1, Math.floor((width - 30) / 250));
  services.forEach((s, k) => {
    const tier: TierId = s.name === "kube-dns" ? "dns" : s.name === lab.workloads.businessManager.name ? "service" : "business-flow";
    parts.push(
      box(
        30 + (k % perRow) * 250,
        sy + Math.floor(k / perRow) * 54,
        240,
        44,
        COLOR[p.verdictOf(tier)],
        `svc ${s.namespace}/${s.name}`,
        `${s.clusterIP} ${s.ports}`,
        tier,
      ),
    );
  });
  const total = sy + Math.ceil(services.length / perRow) * 54 + 10;
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${total}" width="${width}" height="${total}" role="img" aria-label="lab topology">${parts.join("")}</svg>`;
}

const STYLE = `body{font:14px/1.4 system-ui,sans-serif;margin:20px;color:#263238}h1{font-size:20px}
.t{font:600 13px system-ui,sans-serif}.s{font:12px system-ui,sans-serif;fill:#455a64}.n{font:700 15px system-ui,sans-serif}.p{font:11px monospace}
.el{cursor:pointer}details{margin:6px 0;border-left:6px solid #90a4ae;padding:2px 10px;background:#fafafa}summary{font-weight:600}
pre{background:#263238;color:#eceff1;padding:8px;overflow:auto;font-size:12px;max-height:320px}.ok{color:#2e7d32}.bad{color:#c62828}
.badge{display:inline-block;color:#fff;border-radius:4px;padding:0 6px;margin-right:6px;font-size:12px}`;

/** Clicking a drawn element opens its tier's details. */
const SCRIPT = `document.querySelectorAll('.el[data-tier]').forEach(function(g){g.addEventListener('click',function(){var d=document.getElementById('tier-'+g.getAttribute('data-tier'));if(d){d.open=true;d.scrollIntoView({behavior:'smooth'});}});});`;

function page(p: Page): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(p.title)}</title><style>${STYLE}</style></head><body><h1>${esc(p.title)}</h1>${topologySvg(p)}${p.body}<script>${SCRIPT}</script></body></html>\n`;
}

const badge = (v: Verdict | "none") => `<span class="badge" style="background:${COLOR[v]}">${v === "none" ? "not run" : v}</span>`;

export function renderProbeHtml(report: ProbeReport, lab: Lab, live: LiveTopology = {}): string {
  const verdicts = new Map(report.results.map((r) => [r.tier, r.verdict]));
  const tiers = report.results
    .map(
      (r) =>
        `<details id="tier-${r.tier}" style="border-color:${COLOR[r.verdict]}"${r.verdict === "pass" ? "" : " open"}><summary>${badge(r.verdict)}${esc(r.tier)}: ${esc(r.title)} (${(r.durationMs / 1000).toFixed(1)} s)${r.blockedBy ? ` - blocked by ${esc(r.blockedBy)}` : ""}</summary>` +
        (r.reason ? `<p>${esc(r.reason)}</p>` : "") +
        `<ol>${r.hops.map((h) => `<li class="${h.ok ? "ok" : "bad"}">${h.ok ? "✓" : "✗"} <b>${esc(h.name)}</b>: ${esc(h.detail)}${h.fix && !h.ok ? `<br><i>fix: ${esc(h.fix)}</i>` : ""}</li>`).join("")}</ol>` +
        `<details><summary>evidence (${r.evidence.length} commands)</summary>${r.evidence
          .map(
            (e) =>
              `<pre>$ [${esc(e.where)}] ${esc(e.command)}   (exit ${e.exitCode}, ${e.ms} ms)\n${esc(e.stdout.trimEnd())}${e.stderr.trim() ? `\n! ${esc(e.stderr.trimEnd())}` : ""}</pre>`,
          )
          .join("")}</details></details>`,
    )
    .join("");
  const status = report.ok ? "every tier passes" : "some tiers do not pass";
  return page({
    title: `k8slab probe: lab ${lab.name}, ${status} (${report.startedAt})`,
    lab,
    live,
    verdictOf: (t) => verdicts.get(t) ?? "none",
    body: `<h2>Tiers, bottom-up</h2>${tiers}`,
  });
}

export function renderTraceHtml(report: TraceReport, lab: Lab, live: LiveTopology = {}): string {
  const pointColor = new Map<string, string>();
  for (const leg of report.legs)
    for (const pt of leg.points)
      if (!pointColor.has(pt.spot) || pt.verdict !== "seen")
        pointColor.set(pt.spot, pt.verdict === "seen" ? COLOR.pass : pt.verdict === "request only" ? COLOR.inconclusive : COLOR.fail);
  const legs = report.legs
    .map(
      (leg) =>
        `<details open><summary>${esc(leg.name)}: ${esc(leg.from)} -> ${esc(leg.to)}</summary><ol>${leg.points
          .map(
            (pt) =>
              `<li class="${pt.verdict === "seen" ? "ok" : "bad"}"><b>${esc(pt.spot)}${pt.encap ? " (VXLAN)" : ""}</b> ${esc(pt.role)}: ${esc(pt.verdict)}` +
              `<pre>${esc([...pt.request.map((x) => x.headers), ...pt.reply.map((x) => `${x.headers}  (reply)`)].join("\n") || "the request was not seen here")}</pre></li>`,
          )
          .join("")}</ol></details>`,
    )
    .join("");
  const nat = report.nat ? `<h2>NAT on ${esc(report.nat.node)}</h2><pre>${esc([report.nat.conntrack, ...report.nat.rules].join("\n"))}</pre>` : "";
  const lost = report.lost
    ? `<h2 class="bad">lost between ${esc(report.lost.after)} and ${esc(report.lost.before)}</h2>${report.lost.state.map((s) => `<pre>$ ${esc(s.command)}\n${esc(s.output)}</pre>`).join("")}`
    : "";
  return page({
    title: `k8slab trace ${report.from} -> ${report.to} (${report.proto}): ${report.ok ? "delivered, and answered" : "NOT delivered"}`,
    lab,
    live,
    verdictOf: () => "none",
    pointColor,
    body: `<p>sent from ${esc(report.sent.where)}: <code>${esc(report.sent.command)}</code> (exit ${report.sent.exitCode})</p>${nat}<h2>Points, in the order the request crosses them</h2>${legs}${lost}`,
  });
}

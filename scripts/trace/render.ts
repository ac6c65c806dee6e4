// A trace as the learner reads it: the hop chain, each point with the time the packet was there and
// its headers as rewritten at that point; the NAT decision; where the packet vanished and why.
import type { TraceReport } from "./run.ts";

const paint = (on: boolean) => (code: number, text: string) => (on ? `\x1b[${code}m${text}\x1b[0m` : text);

/** hh:mm:ss.micro in UTC (node clocks; the lab's VMs keep the host's). */
const clock = (t: number) => `${new Date(t * 1000).toISOString().slice(11, 19)}.${String(Math.round((t % 1) * 1e6)).padStart(6, "0")}`;

export function renderTrace(r: TraceReport, opts: { color?: boolean } = {}): string {
  const c = paint(!!opts.color);
  const lines = [
    `trace ${r.from} -> ${r.to} (${r.proto}${r.port ? ` ${r.port}` : ""}) on lab ${r.lab}: ${r.ok ? c(32, "delivered, and answered") : c(31, "NOT delivered")} in ${r.seconds} s`,
    `  sent from ${r.sent.where}: ${r.sent.command}`,
    `    -> exit ${r.sent.exitCode}${r.sent.output ? `: ${r.sent.output.split("\n").slice(-2).join(" | ")}` : ""}`,
    "  (times are each machine's own clock: emulated guests drift from the host and from each other by up to a second)",
  ];
  if (r.nat) {
    lines.push(`  NAT on ${r.nat.node}${r.nat.backend ? `: kube-proxy chose ${r.nat.backend}` : ""}`, `    conntrack: ${r.nat.conntrack}`);
    for (const rule of r.nat.rules) lines.push(`    ${rule}`);
  }
  for (const leg of r.legs) {
    lines.push(`  ${leg.name}: ${leg.from} -> ${leg.to}`);
    const width = Math.max(...leg.points.map((p) => p.spot.length + (p.encap ? 8 : 0)));
    for (const p of leg.points) {
      const mark = p.verdict === "seen" ? c(32, "✓") : p.verdict === "request only" ? c(33, "→") : c(31, "✗");
      const name = `${p.spot}${p.encap ? " (VXLAN)" : ""}`.padEnd(width);
      const first = p.request[0];
      lines.push(`    ${mark} ${name}  ${p.role}`);
      lines.push(first ? `        ${clock(first.time)}  ${first.headers}` : "        the request was not seen here");
      if (p.reply[0]) lines.push(`        ${clock(p.reply[0].time)}  ${p.reply[0].headers}  (reply)`);
    }
  }
  if (r.lost) {
    lines.push(c(31, `  lost between ${r.lost.after} and ${r.lost.before}`));
    for (const s of r.lost.state) lines.push(`    $ ${s.command}`, ...s.output.split("\n").map((l) => `      ${l}`));
  }
  return `${lines.join("\n")}\n`;
}

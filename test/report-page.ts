// What a probe run's HTML page must show, checked on its text as a reader sees it, and the page as
// headless Chromium leaves it: shared by the test on recorded output (report-html.test.ts) and the
// end-to-end check on a live lab (e2e/container-lab.e2e.ts). The expectations come from the report and
// from values the caller read on its own (a fixture's files, or the live lab), never from the page.
import { spawnSync } from "node:child_process";
import path from "node:path";
import type { ProbeReport } from "../scripts/probes/types.ts";

/** Debian's Chromium, when installed. */
export const chromiumBinary = () => ["chromium", "chromium-browser"].find((b) => spawnSync(b, ["--version"]).status === 0);

/** The page after headless Chromium loaded it and ran its script: the DOM, and Chromium's log (console messages, uncaught errors). */
export function chromiumDom(chromium: string, file: string, workDir: string): { status: number | null; dom: string; log: string } {
  const r = spawnSync(
    chromium,
    [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      `--user-data-dir=${path.join(workDir, "chromium-profile")}`,
      "--enable-logging=stderr",
      "--v=0",
      "--virtual-time-budget=2000",
      "--dump-dom",
      `file://${file}`,
    ],
    { encoding: "utf8", timeout: 90_000 },
  );
  return { status: r.status, dom: r.stdout ?? "", log: r.stderr ?? "" };
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: " " };

/** The text a reader sees: <style> and <script> left out, tags dropped, character references decoded. */
export function pageText(html: string): string {
  return html
    .replace(/<(style|script)\b[^>]*>[\s\S]*?<\/\1>/gi, "")
    .replace(/<[^>]*>/g, "")
    .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (all, ref: string) =>
      ref[0] === "#"
        ? String.fromCodePoint(ref[1] === "x" || ref[1] === "X" ? Number.parseInt(ref.slice(2), 16) : Number(ref.slice(1)))
        : (ENTITIES[ref] ?? all),
    );
}

/** Values the caller read itself, beside the report, that the page must draw. */
export interface PageValues {
  nodes: string[];
  /** Pods with an address of their own (not on the host's network). */
  pods: { name: string; ip: string }[];
  /** Services with a ClusterIP. */
  services: { namespace: string; name: string; clusterIP: string }[];
  /** Each node's VTEP MAC, by node. */
  vtepMacs: Record<string, string>;
}

const literal = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * What is missing or wrong on a probe run's page (its HTML, or Chromium's DOM of it): every node
 * drawn with its VTEP MAC; every tier with its verdict, duration and blocker, each verdict in a
 * colour of its own, a tier that did not pass open; every hop with its detail; the pods and the
 * Services with their ClusterIPs.
 */
export function pageProblems(html: string, report: ProbeReport, values: PageValues): string[] {
  const problems: string[] = [];
  const text = pageText(html);
  const shows = (what: string, s: string) => {
    if (!text.includes(s)) problems.push(`${what} not shown: ${JSON.stringify(s)}`);
  };
  const draws = (what: string, re: RegExp) => {
    if (!re.test(html)) problems.push(`${what} not drawn (${re.source})`);
  };
  shows("the lab and the run", `k8slab probe: lab ${report.lab}, `);
  shows("the run's start", report.startedAt);
  for (const n of values.nodes) draws(`node ${n}`, new RegExp(`<g id="node-${literal(n)}"`));
  // A node's boxes are groups with ids "<node>/<device>"; its VTEP MAC is drawn in one of them.
  for (const [n, mac] of Object.entries(values.vtepMacs))
    draws(`${n}'s VTEP MAC`, new RegExp(`id="${literal(n)}/[^"]*">(?:(?!</g>).)*, ${literal(mac)}</text>`));
  const colourOf = new Map<string, string>();
  for (const r of report.results) {
    const details = new RegExp(`<details id="tier-${r.tier}" style="border-color:\\s*([^;"]+);?"( open(="")?)?>`).exec(html);
    if (!details) {
      problems.push(`tier ${r.tier} has no section`);
      continue;
    }
    if (r.verdict !== "pass" && !details[2]) problems.push(`tier ${r.tier} (${r.verdict}) is not open`);
    const known = colourOf.get(r.verdict);
    if (known && known !== details[1]) problems.push(`${r.verdict} tiers in two colours: ${known}, ${details[1]} (${r.tier})`);
    colourOf.set(r.verdict, details[1]);
    shows(`tier ${r.tier}`, `${r.verdict}${r.tier}: ${r.title} (${(r.durationMs / 1000).toFixed(1)} s)${r.blockedBy ? ` - blocked by ${r.blockedBy}` : ""}`);
    for (const h of r.hops) shows(`a hop of ${r.tier}`, `${h.ok ? "✓" : "✗"} ${h.name}: ${h.detail}`);
  }
  const colours = [...colourOf.values()];
  if (new Set(colours).size !== colours.length) problems.push(`two verdicts share a colour: ${JSON.stringify(Object.fromEntries(colourOf))}`);
  for (const p of values.pods) draws(`pod ${p.name}`, new RegExp(`>${literal(p.name)} ${literal(p.ip)}</text>`));
  for (const s of values.services)
    draws(`Service ${s.namespace}/${s.name}`, new RegExp(`>svc ${literal(`${s.namespace}/${s.name}`)}</text><text [^>]*>${literal(s.clusterIP)} `));
  return problems;
}

// Renderers of a probe report: the terminal (a table, then each tier hop by hop), JSON, and JUnit XML.
import Table from "cli-table3";
import type { Exec, ProbeReport, TierResult } from "./types.ts";

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 3)}...` : s);

function summary(r: TierResult): string {
  if (r.verdict === "blocked") return `blocked by ${r.blockedBy}`;
  if (r.verdict === "skipped") return r.reason ?? "skipped";
  if (r.verdict === "fail") return r.firstBrokenHop ?? "failed";
  if (r.verdict === "inconclusive") return `no finding: ${r.reason}`;
  return `${r.hops.length} hops ok${r.retried ? ` (run again: ${r.retried})` : ""}`;
}

function counts(report: ProbeReport): string {
  const n = (v: string) => report.results.filter((r) => r.verdict === v).length;
  return [
    `${n("pass")} passed`,
    n("fail") && `${n("fail")} failed`,
    n("inconclusive") && `${n("inconclusive")} inconclusive`,
    n("blocked") && `${n("blocked")} blocked`,
    n("skipped") && `${n("skipped")} skipped`,
  ]
    .filter(Boolean)
    .join(", ");
}

/** The last lines of an output, indented; evidence is for reading, not for scrolling. */
function excerpt(text: string, lines = 8): string[] {
  const all = text.trimEnd().split("\n");
  const shown = all.length > lines ? [`... (${all.length - lines} more lines)`, ...all.slice(-lines)] : all;
  return shown.map((l) => `        ${clip(l, 160)}`);
}

function evidenceLines(e: Exec): string[] {
  return [
    `    $ [${e.where}] ${e.command}   (exit ${e.exitCode}, ${e.ms} ms)`,
    ...(e.stdout.trim() ? excerpt(e.stdout) : []),
    ...(e.stderr.trim() ? excerpt(e.stderr, 4).map((l) => l.replace(/^ {8}/, "      ! ")) : []),
  ];
}

/** For people: a table of verdicts, then every tier that ran explained hop by hop; failures show their evidence. */
export function renderTerminal(report: ProbeReport, opts: { color?: boolean } = {}): string {
  const paint = (code: number, s: string) => (opts.color ? `\x1b[${code}m${s}\x1b[0m` : s);
  const verdict = (r: TierResult) =>
    ({ pass: paint(32, "pass"), fail: paint(31, "FAIL"), inconclusive: paint(35, "INCONCL"), blocked: paint(33, "blocked"), skipped: paint(90, "skipped") })[
      r.verdict
    ];
  const table = new Table({
    head: ["tier", "verdict", "time", "first broken hop / summary"],
    style: { head: [], border: [], compact: true },
    colWidths: [16, 9, 8, 72],
    wordWrap: true,
  });
  for (const r of report.results) table.push([r.tier, verdict(r), r.verdict === "blocked" ? "" : seconds(r.durationMs), clip(summary(r), 140)]);

  const out = [`k8slab probe: lab ${report.lab}: ${counts(report)} (${seconds(report.durationMs)})`, table.toString()];
  const slow = report.pace?.filter((p) => p.factor > 1) ?? [];
  if (slow.length)
    out.push(
      `nodes slower than the deadlines were sized for: ${slow.map((p) => `${p.node} starts a process in ${p.processStartMs} ms (deadlines x${p.factor})`).join(", ")}`,
    );
  for (const r of report.results.filter((r) => r.hops.length)) {
    out.push("", `${r.tier} [${verdict(r)}]: ${r.title}`);
    const width = Math.max(...r.hops.map((h) => h.name.length));
    for (const h of r.hops) out.push(`  ${h.ok ? paint(32, "✓") : paint(31, "✗")} ${h.name.padEnd(width)}  ${h.detail}`);
    if (r.verdict === "fail") {
      out.push(`  first broken hop: ${r.firstBrokenHop}`);
      if (r.likelyFix) out.push(`  likely fix: ${r.likelyFix}`);
      out.push("  evidence:", ...r.evidence.flatMap(evidenceLines));
    }
  }
  // Not a network finding: the nodes did not run the probe's steps in time, twice.
  for (const r of report.results.filter((r) => r.verdict === "inconclusive")) {
    out.push("", `${r.tier} [${verdict(r)}]: ${r.title}`, `  no finding: ${r.reason}`, "  evidence:", ...r.evidence.flatMap(evidenceLines));
  }
  const blocked = report.results.filter((r) => r.verdict === "blocked");
  if (blocked.length)
    out.push("", `not judged, because a tier below them failed or is inconclusive: ${blocked.map((r) => `${r.tier} (blocked by ${r.blockedBy})`).join(", ")}`);
  return `${out.join("\n")}\n`;
}

/** For programs: the report as it is, evidence included. */
export function renderJson(report: ProbeReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}

// XML 1.0 allows neither most control characters nor unpaired surrogates; command output may hold both.
const xml = (s: string) =>
  s
    .replace(/[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, "\uFFFD")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");

/** For CI: one testcase per tier; a failed tier is a <failure>, an inconclusive one an <error> (no finding), a blocked or skipped one <skipped>. */
export function renderJunit(report: ProbeReport): string {
  const n = (v: string) => report.results.filter((r) => r.verdict === v).length;
  const time = (ms: number) => (ms / 1000).toFixed(3);
  const cases = report.results.map((r) => {
    const hops = r.hops.map((h) => `${h.ok ? "ok  " : "FAIL"} ${h.name}: ${h.detail}`).join("\n");
    const evidence = r.evidence
      .map((e) => `$ [${e.where}] ${e.command} (exit ${e.exitCode}, ${e.ms} ms)\n${e.stdout}${e.stderr ? `\n${e.stderr}` : ""}`)
      .join("\n\n");
    const body =
      r.verdict === "fail"
        ? `      <failure message="${xml(r.firstBrokenHop ?? "failed")}" type="broken-hop">${xml(`${hops}\n\nlikely fix: ${r.likelyFix ?? "-"}`)}</failure>\n`
        : r.verdict === "inconclusive"
          ? `      <error message="${xml(`inconclusive: ${r.reason}`)}" type="inconclusive"/>\n`
          : r.verdict === "blocked"
            ? `      <skipped message="${xml(`blocked by ${r.blockedBy}`)}"/>\n`
            : r.verdict === "skipped"
              ? `      <skipped message="${xml(r.reason ?? "skipped")}"/>\n`
              : "";
    const out = r.hops.length || r.evidence.length ? `      <system-out>${xml(`${hops}\n\n${evidence}`)}</system-out>\n` : "";
    return `    <testcase classname="k8slab.probe.${xml(report.lab)}" name="${xml(`${r.tier}: ${r.title}`)}" time="${time(r.durationMs)}">\n${body}${out}    </testcase>\n`;
  });
  const counts = `tests="${report.results.length}" failures="${n("fail")}" errors="${n("inconclusive")}" skipped="${n("blocked") + n("skipped")}" time="${time(report.durationMs)}"`;
  return [
    `<?xml version="1.0" encoding="UTF-8"?>\n`,
    `<testsuites name="k8slab probe" ${counts}>\n`,
    `  <testsuite name="k8slab.probe.${xml(report.lab)}" ${counts} timestamp="${report.startedAt}">\n`,
    ...cases,
    `  </testsuite>\n`,
    `</testsuites>\n`,
  ].join("");
}

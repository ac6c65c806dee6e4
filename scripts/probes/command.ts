// `k8slab probe`: runs the tiers against the live lab and prints the report (terminal or JSON), optionally a JUnit file.
import path from "node:path";
import { EXIT } from "../../core/exit.ts";
import type { Lab } from "../../core/index.ts";
import { labOrProblems } from "../lab-file.ts";
import { renderProbeHtml } from "../report/html.ts";
import { writeHtml } from "../report/write.ts";
import { parsePcap, toPcapng } from "../trace/packets.ts";
import { assertOutput, outputDir, writeOutput } from "../user-file.ts";
import { TIER_IDS, type TierId } from "./contract.ts";
import { type LiveOptions, liveAccess } from "./live.ts";
import { renderJson, renderJunit, renderTerminal } from "./render.ts";
import { type RunOptions, runProbes } from "./runner.ts";
import type { ProbeReport } from "./types.ts";

export interface ProbeOptions extends LiveOptions {
  json?: boolean;
  junit?: string;
  /** Each capture's packets as pcapng, one file per capture point (node and capture). */
  pcap?: string;
  /** A self-contained HTML page: the lab's topology coloured by verdict, every tier and its evidence. */
  html?: string;
  /** Tier ids; each may also be a comma-separated list. */
  tiers?: string[];
}

/** Writes each capture as DIR/<node>-<capture>.pcapng, its interface named node/capture. */
function pcapWriter(dir: string) {
  outputDir(dir, "--pcap");
  return (node: string, capture: string, pcap: Buffer) => {
    const file = path.join(dir, `${node}-${capture}.pcapng`);
    writeOutput(
      file,
      toPcapng([{ name: `${node}/${capture}`, description: `k8slab probe capture ${capture} on ${node}`, packets: parsePcap(pcap) }]),
      "--pcap",
    );
    process.stderr.write(`pcapng: ${file}\n`);
  };
}

/** Probes a loaded lab (what `up` calls at its end); the caller renders. */
export async function probeLab(lab: Lab, opts: LiveOptions & Pick<RunOptions, "tiers" | "onResult" | "keepPcap"> = {}): Promise<ProbeReport> {
  const access = liveAccess(lab, opts);
  try {
    return await runProbes(lab, access, { tiers: opts.tiers, onResult: opts.onResult, ...(opts.keepPcap ? { keepPcap: opts.keepPcap } : {}) });
  } finally {
    await access.close();
  }
}

export async function probeCommand(file: string, opts: ProbeOptions = {}): Promise<number> {
  const requested = opts.tiers
    ?.flatMap((t) => t.split(","))
    .map((t) => t.trim())
    .filter(Boolean);
  const unknown = requested?.filter((t) => !(TIER_IDS as readonly string[]).includes(t)) ?? [];
  if (unknown.length) {
    console.error(`k8slab probe: unknown tier ${unknown.map((t) => `"${t}"`).join(", ")}; tiers: ${TIER_IDS.join(", ")}`);
    return EXIT.invalid;
  }
  const lab = labOrProblems(file);
  if (!lab) return EXIT.invalid;
  // Where the reports go is checked before the run, not after it.
  if (opts.junit) assertOutput(opts.junit, "--junit");
  if (opts.html) assertOutput(opts.html, "--html");
  const report = await probeLab(lab, {
    ...(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {}),
    ...(requested?.length ? { tiers: requested as TierId[] } : {}),
    ...(opts.pcap ? { keepPcap: pcapWriter(opts.pcap) } : {}),
    // A progress line per tier on stderr, so a 30-second run is not silent; JSON output stays clean.
    onResult: (r) => process.stderr.write(`• ${r.tier}: ${r.verdict}${r.blockedBy ? ` (by ${r.blockedBy})` : ""} ${(r.durationMs / 1000).toFixed(1)} s\n`),
  });
  process.stdout.write(opts.json ? renderJson(report) : renderTerminal(report, { color: process.stdout.isTTY }));
  if (opts.junit) writeOutput(opts.junit, renderJunit(report), "--junit");
  if (opts.html) await writeHtml(opts.html, lab, (live) => renderProbeHtml(report, lab, live));
  return report.ok ? EXIT.ok : EXIT.failed;
}

// `k8slab trace [LAB] FROM TO [--proto icmp|tcp|udp] [--port N] [--json] [--pcap DIR]`: checks the
// input and the lab before anything is sent, runs the trace, prints the hop chain (or JSON), writes
// one pcapng per capture point (and one with all of them) for Wireshark.
import path from "node:path";
import { EXIT } from "../../core/exit.ts";
import type { Lab } from "../../core/index.ts";
import { labOrProblems } from "../lab-file.ts";
import { labIsUp } from "../machines/lab.ts";
import { liveAccess } from "../probes/live.ts";
import { readerOf } from "../probes/types.ts";
import { renderTraceHtml } from "../report/html.ts";
import { writeHtml } from "../report/write.ts";
import { assertOutput, assertOutputDir, outputDir, writeOutput } from "../user-file.ts";
import { type Proto, parseEndpoint, protoFor, resolveSource, resolveTarget } from "./endpoints.ts";
import { toPcapng } from "./packets.ts";
import { renderTrace } from "./render.ts";
import { runTrace, type TraceReport } from "./run.ts";

const say = (line: string) => process.stderr.write(`${line}\n`);
const PROTOS = ["icmp", "tcp", "udp"] as const;

export interface TraceOptions {
  proto?: string;
  port?: string;
  json?: boolean;
  pcap?: string;
  html?: string;
}

export async function traceCommand(labFile: string, fromText: string, toText: string, opts: TraceOptions): Promise<number> {
  const lab = labOrProblems(labFile);
  if (!lab) return EXIT.invalid;
  const refuse = (why: string) => {
    say(`k8slab trace: ${why}; nothing was sent`);
    return EXIT.invalid;
  };
  if (opts.proto !== undefined && !PROTOS.includes(opts.proto as Proto)) return refuse(`--proto ${opts.proto}: one of ${PROTOS.join(", ")}`);
  const port = opts.port === undefined ? undefined : Number(opts.port);
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) return refuse(`--port ${opts.port}: a port number (1-65535)`);
  const from = parseEndpoint(lab, fromText);
  if (typeof from === "string") return refuse(`FROM ${from}`);
  const to = parseEndpoint(lab, toText);
  if (typeof to === "string") return refuse(`TO ${to}`);
  if (opts.html) assertOutput(opts.html, "--html");
  if (opts.pcap) assertOutputDir(opts.pcap, "--pcap");
  const how = protoFor(lab, to, opts.proto as Proto | undefined, port);
  if (typeof how === "string") return refuse(how);
  if (how.proto === "udp" && !(from.kind === "pod" && from.workload === "toolbox"))
    return refuse("--proto udp is sent with dig, which only the toolbox pods have: trace from toolbox or toolbox/1");
  if (!(await labIsUp(lab))) {
    return refuse(`lab ${lab.name} is not up (\`npx k8slab up ${labFile}\`)`);
  }
  const access = liveAccess(lab);
  let report: TraceReport;
  try {
    const reader = readerOf(lab, access);
    const source = await resolveSource(reader, lab, from);
    if (typeof source === "string") return refuse(`FROM ${source}`);
    const target = await resolveTarget(reader, lab, to);
    if (typeof target === "string") return refuse(`TO ${target}`);
    report = await runTrace(access, {
      lab,
      from: source,
      fromText,
      toText,
      target,
      proto: how.proto,
      ...(how.port ? { port: how.port, backendPort: backendPort(lab, toText, how.port) } : {}),
    });
  } catch (err) {
    say(`k8slab trace: ${(err as Error).message}`);
    return EXIT.failed;
  } finally {
    await access.close();
  }
  if (opts.pcap) say(`pcapng files: ${writePcaps(opts.pcap, report).join(", ")}`);
  if (opts.html) await writeHtml(opts.html, lab, (live) => renderTraceHtml(report, lab, live));
  if (opts.json) {
    const { captured, ...rest } = report;
    process.stdout.write(`${JSON.stringify({ ...rest, captured: captured.map((c) => ({ spot: c.spot.id, packets: c.packets.length })) }, null, 2)}\n`);
  } else {
    process.stdout.write(renderTrace(report, { color: process.stdout.isTTY }));
  }
  return report.ok ? EXIT.ok : EXIT.failed;
}

/** The port behind a Service or NodePort: the workload's own (the lab's Services keep the pod's port). */
function backendPort(lab: Lab, toText: string, port: number): number {
  const { businessManager, dataProduct } = lab.workloads;
  if (toText.startsWith("nodeport/") || toText === "ingress") return businessManager.port;
  if (toText === `svc/${dataProduct.name}`) return dataProduct.port;
  if (toText === `svc/${businessManager.name}`) return businessManager.port;
  return port;
}

/** One pcapng per capture point that saw the trace (named node-device), and all.pcapng with every point. */
function writePcaps(dir: string, report: TraceReport): string[] {
  outputDir(dir, "--pcap");
  const seen = report.captured.filter((c) => c.packets.length);
  const iface = (c: TraceReport["captured"][number]) => ({
    name: c.spot.id,
    description: `k8slab trace ${report.from} -> ${report.to} (${report.proto}) on ${c.spot.id}`,
    packets: c.packets,
  });
  const files = seen.map((c) => {
    const file = path.join(dir, `${c.spot.id.replace(/[^A-Za-z0-9.-]+/g, "-")}.pcapng`);
    writeOutput(file, toPcapng([iface(c)]), "--pcap");
    return file;
  });
  const all = path.join(dir, "all.pcapng");
  writeOutput(all, toPcapng(seen.map(iface)), "--pcap");
  return [...files, all];
}

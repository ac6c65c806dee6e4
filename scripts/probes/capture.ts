// A packet capture on a node in two steps, so traffic is sent only once tcpdump listens: under TCG
// tcpdump takes seconds to start, and a capture merely started "at the same time" misses the packets.

import { pause, shq } from "../../core/shell.ts";
import { TIMEOUT } from "./contract.ts";
import { parseTcpdumpUdp, type UdpPacket } from "./parse.ts";
import { type Exec, NoFinding, type ProbeContext } from "./types.ts";

/** Where a capture's output waits for `collect` on the node (a tmpfs; removed when collected). */
const CAPTURE_DIR = "/run/k8slab-probe";

export interface Capture {
  /** Tells concurrent captures apart; names the pcap file too. */
  name: string;
  /** Starts tcpdump in the background and returns once it listens (exit 1 with its error when it could not start). */
  start: string;
  /**
   * Run once the traffic was sent: waits `graceSec` for tcpdump to reach its packet count (packets
   * still on their way), then stops it; prints what it saw, tcpdump's stderr and exits with its exit code.
   */
  collect: (graceSec: number) => string;
  /** The same capture writing a pcap file; its collect prints the packets as `start`'s tcpdump would, then the file as one base64 line. */
  pcap: { start: string; collect: (graceSec: number) => string };
}

/** The line a pcap collect ends with. */
const PCAP_LINE = "k8slab-pcap ";

/** GNU timeout's exit code when the time ran out. */
const TIMED_OUT = 124;

/** How long packets already sent may take to reach the capture, on a node of pace 1. */
const IN_FLIGHT_SEC = 2;

/** Makes every capture's files its own: a capture left behind by a run that overran must not end a later one's collect with its exit code. */
let captures = 0;

/**
 * @param name tells concurrent captures apart, e.g. "underlay-from-192.168.0.21"; the files also carry this process's id and a count.
 * @param tcpdump the tcpdump command line, bounded by a packet count (-c), with --immediate-mode so
 *   each packet is handed over (and counted) as it arrives, not when the kernel's buffer block is retired.
 * @param maxSec a capture ends by then whatever becomes of the run that started it; collect stops it
 *   as soon as the traffic was sent, so a slow sender never outlasts its capture.
 * @param dir holds its output until collected (tests use a temporary one).
 */
export function capture(name: string, tcpdump: string, maxSec: number = TIMEOUT.captureMax, dir = CAPTURE_DIR): Capture {
  const base = `${dir}/${name}-${process.pid}.${++captures}`;
  /** Starts `run` (tcpdump, its stderr to .err; its pid to .pid, then its exit code to .rc) in the background and returns once tcpdump listens. */
  const start = (run: string) =>
    [
      `mkdir -p ${dir} && rm -f ${base}.*`,
      `setsid sh -c ${shq(`${run} & echo $! >${base}.pid; wait $!; echo $? >${base}.rc`)} </dev/null >/dev/null 2>&1 &`,
      // bash builtins for the test: a grep per look would cost a process start each time under TCG.
      `until [[ -e ${base}.err && $(<${base}.err) == *"listening on"* ]]; do if [ -e ${base}.rc ]; then echo "$(<${base}.err)" >&2; exit 1; fi; ${pause(0.1)}; done`,
      `echo "capture ${name} listening"`,
    ].join("\n");
  /** Gives tcpdump `graceSec` to end at its count, stops it (SIGTERM to timeout, which hands it on), runs `show`, then hands over its stderr and exit code and removes the files. */
  const collect = (show: string) => (graceSec: number) =>
    [
      `for ((i = 0; i < ${Math.ceil(graceSec * 10)}; i++)); do [ -e ${base}.rc ] && break; ${pause(0.1)}; done`,
      `[ -e ${base}.rc ] || kill -TERM "$(<${base}.pid)" 2>/dev/null`,
      `until [ -e ${base}.rc ]; do ${pause(0.1)}; done`,
      `${show}; cat ${base}.err >&2; read -r rc <${base}.rc; rm -f ${base}.*; exit $rc`,
    ].join("\n");
  return {
    name,
    start: start(`timeout ${maxSec} ${tcpdump} >${base}.out 2>${base}.err`),
    collect: collect(`cat ${base}.out`),
    pcap: {
      start: start(`timeout ${maxSec} ${tcpdump.replace(/^tcpdump /, `tcpdump -U -w ${base}.pcap `)} 2>${base}.err`),
      collect: collect(`tcpdump -r ${base}.pcap -nn 2>/dev/null; echo "${PCAP_LINE}$(base64 -w0 ${base}.pcap)"`),
    },
  };
}

/**
 * On `node`: starts the capture, runs `send` once it listens, then collects. What send returned, and
 * the UDP packets seen. A capture that did not start, or that ended before its traffic was sent, saw
 * nothing worth a verdict: NoFinding (the tier is retried, then inconclusive).
 */
export async function captureAround<T>(
  ctx: ProbeContext,
  node: string,
  c: Capture,
  send: () => Promise<T>,
): Promise<{ sent: T; packets: UdpPacket[]; text: string }> {
  const how = ctx.keepPcap ? c.pcap : c;
  const started = await ctx.onNode(node, how.start, TIMEOUT.query);
  if (started.exitCode !== 0) throw new NoFinding(`the capture ${c.name} on ${node} did not start: ${lastLine(started)}`);
  const sent = await send();
  const graceSec = IN_FLIGHT_SEC * (await ctx.paceOf(node));
  const collected = await ctx.onNode(node, how.collect(graceSec), graceSec + TIMEOUT.query);
  if (collected.exitCode === TIMED_OUT) throw new NoFinding(`the capture ${c.name} on ${node} ran out of time before its traffic was sent`);
  if (collected.exitCode !== 0) throw new NoFinding(`the capture ${c.name} on ${node} failed: ${lastLine(collected)}`);
  let text = collected.stdout;
  const at = text.lastIndexOf(PCAP_LINE);
  if (ctx.keepPcap && at >= 0) {
    ctx.keepPcap(node, c.name, Buffer.from(text.slice(at + PCAP_LINE.length).trim(), "base64"));
    text = text.slice(0, at);
  }
  return { sent, packets: parseTcpdumpUdp(text).packets, text };
}

const lastLine = (e: Exec) => e.stderr.trim().split("\n").pop() || `exit ${e.exitCode}`;

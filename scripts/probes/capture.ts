// A packet capture on a node in two steps, so traffic is sent only once tcpdump listens: under TCG
// tcpdump takes seconds to start, and a capture merely started "at the same time" misses the packets.

import { pause, shq } from "../../core/shell.ts";
import { TIMEOUT } from "./contract.ts";
import { parseTcpdumpUdp, type UdpPacket } from "./parse.ts";
import type { ProbeContext } from "./types.ts";

/** Where a capture's output waits for `collect` on the node (a tmpfs; removed when collected). */
const CAPTURE_DIR = "/run/k8slab-probe";

export interface Capture {
  /** Tells concurrent captures apart; names the pcap file too. */
  name: string;
  /** Starts tcpdump in the background and returns once it listens (exit 1 with its error when it could not start). */
  start: string;
  /** Waits for tcpdump to end (its packet count or its timeout), prints what it saw and tcpdump's exit code. */
  collect: string;
  /** How long tcpdump may run once it listens. */
  timeoutSec: number;
  /** The same capture writing a pcap file; its collect prints the packets as `start`'s tcpdump would, then the file as one base64 line. */
  pcap: { start: string; collect: string };
}

/** The line a pcap collect ends with. */
const PCAP_LINE = "k8slab-pcap ";

/** Makes every capture's files its own: a capture left behind by a run that overran must not end a later one's collect with its exit code. */
let captures = 0;

/**
 * @param name tells concurrent captures apart, e.g. "underlay-from-192.168.0.21"; the files also carry this process's id and a count.
 * @param tcpdump the tcpdump command line, bounded by a packet count (-c), with --immediate-mode so
 *   each packet is handed over (and counted) as it arrives, not when the kernel's buffer block is retired.
 * @param dir holds its output until collected (tests use a temporary one).
 */
export function capture(name: string, tcpdump: string, timeoutSec: number = TIMEOUT.capture, dir = CAPTURE_DIR): Capture {
  const base = `${dir}/${name}-${process.pid}.${++captures}`;
  /** Starts `run` (tcpdump, its stderr to .err, then its exit code to .rc) in the background and returns once tcpdump listens. */
  const start = (run: string) =>
    [
      `mkdir -p ${dir} && rm -f ${base}.*`,
      `setsid sh -c ${shq(`${run}; echo $? >${base}.rc`)} </dev/null >/dev/null 2>&1 &`,
      // bash builtins for the test: a grep per look would cost a process start each time under TCG.
      `until [[ -e ${base}.err && $(<${base}.err) == *"listening on"* ]]; do if [ -e ${base}.rc ]; then echo "$(<${base}.err)" >&2; exit 1; fi; ${pause(0.1)}; done`,
      `echo "capture ${name} listening"`,
    ].join("\n");
  /** Waits for tcpdump to end, runs `show`, then hands over its stderr and exit code and removes the files. */
  const collect = (show: string) =>
    `until [ -e ${base}.rc ]; do ${pause(0.1)}; done; ${show}; cat ${base}.err >&2; read -r rc <${base}.rc; rm -f ${base}.*; exit $rc`;
  return {
    name,
    start: start(`timeout ${timeoutSec} ${tcpdump} >${base}.out 2>${base}.err`),
    collect: collect(`cat ${base}.out`),
    timeoutSec,
    pcap: {
      start: start(`timeout ${timeoutSec} ${tcpdump.replace(/^tcpdump /, `tcpdump -U -w ${base}.pcap `)} 2>${base}.err`),
      collect: collect(`tcpdump -r ${base}.pcap -nn 2>/dev/null; echo "${PCAP_LINE}$(base64 -w0 ${base}.pcap)"`),
    },
  };
}

/** On `node`: starts the capture, runs `send` once it listens, then collects. What send returned, and the UDP packets seen. */
export async function captureAround<T>(
  ctx: ProbeContext,
  node: string,
  c: Capture,
  send: () => Promise<T>,
): Promise<{ sent: T; packets: UdpPacket[]; text: string }> {
  const how = ctx.keepPcap ? c.pcap : c;
  await ctx.onNode(node, how.start, TIMEOUT.query);
  const sent = await send();
  const collected = await ctx.onNode(node, how.collect, c.timeoutSec + 2);
  let text = collected.stdout;
  const at = text.lastIndexOf(PCAP_LINE);
  if (ctx.keepPcap && at >= 0) {
    ctx.keepPcap(node, c.name, Buffer.from(text.slice(at + PCAP_LINE.length).trim(), "base64"));
    text = text.slice(0, at);
  }
  return { sent, packets: parseTcpdumpUdp(text).packets, text };
}

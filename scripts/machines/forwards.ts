// A node's host-loopback forwards (socat into the lab namespace), the same for VMs and container nodes:
// started from pidfiles, stopped by pid, never found by pattern.
import fs from "node:fs";
import { sleep } from "zx";
import { forwardPaths, labPaths } from "../../core/paths.ts";
import { PreflightError } from "./preflight.ts";
import { livePid, spawnDetached, stopPid } from "./proc.ts";
import { forwardArgv } from "./render.ts";
import { forwardsOf, type MachineSpec, netOf } from "./spec.ts";

/** Is something listening on 127.0.0.1:port (host namespace)? Read from /proc/net/tcp. */
export function listening(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  try {
    return fs
      .readFileSync("/proc/net/tcp", "utf8")
      .split("\n")
      .some((l) => {
        const f = l.trim().split(/\s+/);
        return f[1] === `0100007F:${hex}` && f[3] === "0A";
      });
  } catch {
    return false;
  }
}

export function forwardMarker(hostPort: number): string {
  return `TCP-LISTEN:${hostPort},bind=127.0.0.1`;
}

export async function startForwards(spec: MachineSpec): Promise<void> {
  const p = forwardPaths(spec.lab, spec.name);
  for (const f of forwardsOf(spec)) {
    if (livePid(p.fwdPid(f.host), forwardMarker(f.host))) continue;
    spawnDetached(forwardArgv(netOf(spec).netns, f.host, spec.address, f.guest), p.fwdLog(f.host), p.fwdPid(f.host));
    const deadline = Date.now() + 5000;
    while (!listening(f.host)) {
      if (!livePid(p.fwdPid(f.host), forwardMarker(f.host)) || Date.now() > deadline) {
        const log = fs.existsSync(p.fwdLog(f.host)) ? fs.readFileSync(p.fwdLog(f.host), "utf8").trim().split("\n").pop() : "";
        throw new Error(`forward 127.0.0.1:${f.host} -> ${spec.address}:${f.guest} did not start: ${log}`);
      }
      await sleep(50);
    }
  }
}

/**
 * A node still running with the same spec: its forwards that died are started again, once preflight
 * (the driver's own: ports free, tools) has nothing against their ports.
 */
export async function restoreForwards(spec: MachineSpec, preflight: (spec: MachineSpec, ports: number[]) => Promise<string[]>): Promise<void> {
  const p = forwardPaths(spec.lab, spec.name);
  const missing = forwardsOf(spec).filter((f) => !livePid(p.fwdPid(f.host), forwardMarker(f.host)));
  const problems = await preflight(
    spec,
    missing.map((f) => f.host),
  );
  if (problems.length) throw new PreflightError(problems);
  await startForwards(spec);
}

/** The host ports of a node's forwards, from their pidfiles in the lab's run folder. */
function forwardPorts(lab: string, name: string): number[] {
  const run = labPaths(lab).run;
  if (!fs.existsSync(run)) return [];
  const prefix = `${name}.fwd-`;
  return fs
    .readdirSync(run)
    .filter((f) => f.startsWith(prefix) && f.endsWith(".pid"))
    .map((f) => Number(f.slice(prefix.length, -".pid".length)));
}

/** Each forward of a node, and whether its socat runs and listens: what `status` shows. */
export function forwardsStatus(lab: string, name: string): { host: number; listening: boolean }[] {
  const p = forwardPaths(lab, name);
  return forwardPorts(lab, name).map((host) => ({ host, listening: !!livePid(p.fwdPid(host), forwardMarker(host)) && listening(host) }));
}

export async function stopForwards(lab: string, name: string): Promise<void> {
  const p = forwardPaths(lab, name);
  // The group: socat forks a child per connection (an open ssh session keeps one).
  for (const port of forwardPorts(lab, name)) await stopPid(p.fwdPid(port), forwardMarker(port), { group: true, graceMs: 2000 });
}

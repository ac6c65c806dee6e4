// Processes this layer starts: pidfiles, "is this pid still ours", stop by pid, detached start.
import { spawn } from "node:child_process";
import fs from "node:fs";
import { sleep } from "zx";

export function readPid(pidfile: string): number | undefined {
  try {
    const pid = Number.parseInt(fs.readFileSync(pidfile, "utf8").trim(), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function cmdline(pid: number): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
  } catch {
    return undefined;
  }
}

function isZombie(pid: number): boolean {
  try {
    return / Z /.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\)/, ""));
  } catch {
    return true;
  }
}

/** The pid in pidfile if that process is alive and its command line contains marker (guards against pid reuse). */
export function livePid(pidfile: string, marker: string): number | undefined {
  const pid = readPid(pidfile);
  if (pid === undefined) return undefined;
  const cmd = cmdline(pid);
  return cmd?.includes(marker) && !isZombie(pid) ? pid : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !isZombie(pid);
  } catch {
    return false;
  }
}

/**
 * Stop the process in pidfile if it is ours (marker in its cmdline): SIGTERM, then SIGKILL after graceMs.
 * group: signal its whole process group (a forking forwarder's children).
 */
export async function stopPid(pidfile: string, marker: string, opts: { graceMs?: number; group?: boolean } = {}): Promise<boolean> {
  const pid = livePid(pidfile, marker);
  let stopped = false;
  if (pid !== undefined) {
    const target = opts.group ? -pid : pid;
    const signal = (s: NodeJS.Signals) => {
      try {
        process.kill(target, s);
      } catch {
        /* already gone */
      }
    };
    signal("SIGTERM");
    const deadline = Date.now() + (opts.graceMs ?? 10_000);
    while (alive(pid) && Date.now() < deadline) await sleep(100);
    if (alive(pid)) {
      signal("SIGKILL");
      while (alive(pid)) await sleep(50);
    }
    stopped = true;
  }
  fs.rmSync(pidfile, { force: true });
  return stopped;
}

/**
 * Start a long-lived process in its own session (so it outlives the CLI and owns a process group),
 * with output to logFile (never to the caller's pipes, which Pulumi waits on), and record its pid.
 */
export function spawnDetached(argv: string[], logFile: string, pidfile: string): number {
  const out = fs.openSync(logFile, "a");
  const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ["ignore", out, out] });
  fs.closeSync(out);
  if (child.pid === undefined) throw new Error(`could not start ${argv[0]}`);
  child.unref();
  fs.writeFileSync(pidfile, `${child.pid}\n`);
  return child.pid;
}

// SSH for both drivers: the per-lab key, OpenSSH argv, wait-for-ssh, and the ssh driver (existing hosts, no VM).
import fs from "node:fs";
import path from "node:path";
import { $, sleep } from "zx";
import { labPaths } from "../../core/paths.ts";
import { shq } from "../../core/shell.ts";
import type { SshEndpoint, SshHostSpec } from "./spec.ts";

/** The lab's ed25519 key pair (no passphrase), created once per lab. */
export async function ensureLabKey(lab: string): Promise<{ keyFile: string; publicKey: string }> {
  const p = labPaths(lab);
  fs.mkdirSync(p.dir, { recursive: true, mode: 0o700 });
  if (!fs.existsSync(p.key) || !fs.existsSync(p.pubKey)) {
    fs.rmSync(p.key, { force: true });
    fs.rmSync(p.pubKey, { force: true });
    await $`ssh-keygen -q -t ed25519 -N ${""} -C ${`k8slab-${lab}`} -f ${p.key}`.quiet();
  }
  return { keyFile: p.key, publicKey: fs.readFileSync(p.pubKey, "utf8").trim() };
}

/** A fresh ed25519 host key pair for a VM, written next to its overlay. */
export async function ensureHostKey(file: string): Promise<{ hostKey: string; hostKeyPub: string }> {
  if (!fs.existsSync(file) || !fs.existsSync(`${file}.pub`)) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.rmSync(file, { force: true });
    fs.rmSync(`${file}.pub`, { force: true });
    await $`ssh-keygen -q -t ed25519 -N ${""} -C ${"k8slab-host"} -f ${file}`.quiet();
  }
  return { hostKey: fs.readFileSync(file, "utf8"), hostKeyPub: fs.readFileSync(`${file}.pub`, "utf8") };
}

/** OpenSSH options for an endpoint: key only, host key checked against the lab's known_hosts. */
export function sshOptions(ep: SshEndpoint, opts: { connectTimeoutSec?: number; acceptNew?: boolean } = {}): string[] {
  return [
    "-i",
    ep.keyFile,
    "-p",
    String(ep.port),
    "-o",
    "BatchMode=yes",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    `UserKnownHostsFile=${ep.knownHostsFile}`,
    "-o",
    `StrictHostKeyChecking=${opts.acceptNew ? "accept-new" : "yes"}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    `ConnectTimeout=${opts.connectTimeoutSec ?? 10}`,
    "-o",
    "ServerAliveInterval=15",
    "-o",
    "LogLevel=ERROR",
  ];
}

/** The end of an ssh argv: the user as an option, and `--` so no host name can be read as an option. */
export function sshDestination(ep: Pick<SshEndpoint, "user" | "host">): string[] {
  return ["-l", ep.user, "--", ep.host];
}

/** argv for `ssh` running command on the endpoint (command is passed to the remote shell as one string). */
export function sshArgv(ep: SshEndpoint, command: string, opts: { acceptNew?: boolean; jump?: SshEndpoint } = {}): string[] {
  const jump = opts.jump
    ? // ProxyCommand through the jump host's sshd: the TCP connection to the target starts on the jump host.
      ["-o", `ProxyCommand=ssh ${[...sshOptions(opts.jump), "-W", "%h:%p", ...sshDestination(opts.jump)].map(shq).join(" ")}`]
    : [];
  return ["ssh", ...sshOptions(ep, opts), ...jump, ...sshDestination(ep), command];
}

/** The same ssh invocation as one shell command line, for a pipeline run by bash (stdin flows to the remote command). */
export function sshCommandLine(ep: SshEndpoint, command: string): string {
  return sshArgv(ep, command).map(shq).join(" ");
}

/** Run a command over ssh; resolves with stdout, rejects with stderr on a non-zero exit. */
export async function sshRun(ep: SshEndpoint, command: string, opts: { jump?: SshEndpoint } = {}): Promise<string> {
  const [bin, ...args] = sshArgv(ep, command, opts);
  return (await $`${bin} ${args}`.quiet()).stdout;
}

export class SshTimeoutError extends Error {
  constructor(ep: SshEndpoint, seconds: number, last: string) {
    super(`ssh ${ep.user}@${ep.host}:${ep.port} did not answer within ${seconds} s (last error: ${last || "none"})`);
    this.name = "SshTimeoutError";
  }
}

/**
 * Wait until sshd on the endpoint runs a command for us. Shared by both drivers.
 * Backoff from 1 s to 5 s; `alive` (e.g. "is the VM's qemu still running") ends the wait early.
 */
export async function waitForSsh(
  ep: SshEndpoint,
  opts: { timeoutSec?: number; acceptNew?: boolean; alive?: () => string | undefined } = {},
): Promise<{ seconds: number; attempts: number }> {
  const started = Date.now();
  const timeoutSec = opts.timeoutSec ?? 300;
  let delay = 1000;
  let last = "";
  for (let attempts = 1; ; attempts++) {
    const dead = opts.alive?.();
    if (dead) throw new Error(dead);
    const [bin, ...args] = sshArgv(ep, "true", { acceptNew: opts.acceptNew });
    const r = await $`${bin} ${args}`.nothrow().quiet().timeout("30s");
    if (r.exitCode === 0) return { seconds: (Date.now() - started) / 1000, attempts };
    last = r.stderr.trim().split("\n").pop() ?? "";
    if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|Permission denied/.test(r.stderr)) {
      // Not a matter of waiting: wrong key or host key.
      throw new Error(`ssh ${ep.user}@${ep.host}:${ep.port}: ${last}`);
    }
    if ((Date.now() - started) / 1000 >= timeoutSec) throw new SshTimeoutError(ep, timeoutSec, last);
    await sleep(delay);
    delay = Math.min(delay * 1.5, 5000);
  }
}

/**
 * The ssh driver's "create": nothing to start, only wait until the existing host answers.
 * Host keys are accepted on first use into knownHostsFile (default: the lab's known_hosts).
 */
export async function sshHostUp(lab: string, spec: SshHostSpec): Promise<SshEndpoint> {
  const ep: SshEndpoint = {
    host: spec.host,
    port: spec.port,
    user: spec.user,
    keyFile: spec.keyFile,
    knownHostsFile: spec.knownHostsFile ?? labPaths(lab).knownHosts,
  };
  fs.mkdirSync(path.dirname(ep.knownHostsFile), { recursive: true });
  await waitForSsh(ep, { timeoutSec: spec.timeoutSec, acceptNew: true });
  return ep;
}

/** The last lines of a node's console log: what an error about a node that did not come up shows. */
export function consoleTail(file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no console log)";
  }
}

/**
 * waitForSsh for a node k8slab started: `gone` says why its process is no longer there, if it is not;
 * a node that never answers is named with its console's tail (a kernel panic, a stuck boot). Returns
 * the seconds since `from`.
 */
export async function waitNodeSsh(
  ep: SshEndpoint,
  consoleLog: string,
  from: number,
  opts: { timeoutSec: number; gone: () => string | undefined },
): Promise<number> {
  try {
    await waitForSsh(ep, {
      timeoutSec: opts.timeoutSec,
      alive: () => {
        const gone = opts.gone();
        return gone && `${gone}; console log ${consoleLog}:\n${consoleTail(consoleLog)}`;
      },
    });
  } catch (err) {
    if (err instanceof SshTimeoutError) throw new Error(`${err.message}; console log ${consoleLog}:\n${consoleTail(consoleLog)}`);
    throw err;
  }
  return (Date.now() - from) / 1000;
}

// The container driver: one privileged LXC system container per node, on an overlay of the cached
// container rootfs, its veth on the lab bridge, its sshd (and extra ports) forwarded to host loopback
// like a VM's. ctUp/ctDown take the same MachineSpec as vmUp/vmDown and are idempotent.
//
// Every lxc-* command runs in the lab's network namespace (nsenter --net, which keeps the host's /sys
// and cgroup mounts): the monitor's control socket is an abstract unix socket, and those are per netns.
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { $, sleep } from "zx";
import { containerOf } from "../../core/names.ts";
import { type CtPaths, ctPaths, labPaths } from "../../core/paths.ts";
import { removeTree } from "../files.ts";
import { cgroupLayout, lxcCgroupDirs, lxcPivotDirs, memoryCharge } from "./cgroups.ts";
import { forwardsStatus, restoreForwards, startForwards, stopForwards } from "./forwards.ts";
import { type ContainerRootfsManifest, ensureContainerRootfs } from "./image.ts";
import { netnsExists } from "./labnet.ts";
import { CT_DOWN_STOP_TIMEOUT_SEC, CT_STOP_TIMEOUT_SEC, ctMountPlan, ctNodeFiles, lxcConfig, netUpHook } from "./lxc-config.ts";
import { PreflightError, preflightCt } from "./preflight.ts";
import { livePid, readPid } from "./proc.ts";
import { endpointOf, readLabNetns, writeLabKnownHosts } from "./qemu.ts";
import { knownHostsLine, seedDirModes } from "./render.ts";
import { forwardsOf, type MachineSpec, type MachineSpecInput, netOf, parseMachineSpec, type SshEndpoint, VM_SSH_WAIT_SEC } from "./spec.ts";
import { consoleTail, ensureHostKey, ensureLabKey, waitNodeSsh } from "./ssh.ts";

function note(line: string) {
  process.stderr.write(`${line}\n`);
}

// ---------------------------------------------------------------- lxc-* in the lab namespace

/**
 * lxc-<tool> -P <lxcpath> -n <container> ..., in the namespace the container's monitor listens in: the
 * monitor's own (while it runs; also after the lab namespace was deleted) or the lab's.
 */
async function lxc(lab: string, name: string, tool: string, args: string[], netns = readLabNetns(lab)) {
  const monitor = livePid(ctPaths(lab, name).pid, containerOf(lab, name));
  const ns = monitor ? `/proc/${monitor}/ns/net` : `/run/netns/${netns}`;
  return $`nsenter --net=${ns} lxc-${tool} -P ${labPaths(lab).lxc} -n ${containerOf(lab, name)} ${args}`.nothrow().quiet();
}

/** LXC's view: RUNNING, STOPPED, ...; STOPPED when neither the monitor nor the lab namespace is there. */
async function lxcState(lab: string, name: string, netns?: string): Promise<string> {
  const p = ctPaths(lab, name);
  if (!livePid(p.pid, containerOf(lab, name)) && !netnsExists(netns ?? readLabNetns(lab))) return "STOPPED";
  const r = await lxc(lab, name, "info", ["-sH"], netns);
  return r.exitCode === 0 ? r.stdout.trim() : "STOPPED";
}

/** The container's init (its systemd) as a host pid, checked against LXC's cgroup for it. */
function initPidOf(lab: string, name: string, pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    return fs.readFileSync(`/proc/${pid}/cgroup`, "utf8").includes(`/lxc.payload.${containerOf(lab, name)}`) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** rmdir a cgroup tree bottom-up; the kernel refuses while a process is in it, so this never kills anything. */
function rmdirCgroup(dir: string): boolean {
  try {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) rmdirCgroup(path.join(dir, e.name));
    fs.rmdirSync(dir);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- state

interface CtState {
  fingerprint: string;
  rootfsKey: string;
  sshPort: number;
  initPid?: number;
  startedAt: string;
}

function readState(file: string): CtState | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as CtState;
  } catch {
    return undefined;
  }
}

/** What identifies a running node's configuration: its LXC config, hook and per-node settings, and the rootfs. */
function fingerprintOf(spec: MachineSpec, rootfsKey: string, config: string, hook: string): string {
  const { hosts, nameservers, address, prefixLength, gateway } = spec;
  return createHash("sha256")
    .update(JSON.stringify({ rootfsKey, config, hook, hosts, nameservers: nameservers ?? null, address, prefixLength, gateway, forwards: forwardsOf(spec) }))
    .digest("hex")
    .slice(0, 16);
}

/** The per-node files go into the upper layer while the node is stopped (never under a mounted overlay). */
function writeNodeFiles(upper: string, files: ReturnType<typeof ctNodeFiles>): void {
  fs.mkdirSync(upper, { recursive: true });
  fs.chmodSync(upper, 0o755); // the upper dir's mode is the node's / mode
  for (const f of files) {
    const parts = f.path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const rel = parts.slice(0, i).join("/");
      const dir = path.join(upper, rel);
      if (!fs.existsSync(dir)) fs.mkdirSync(dir);
      fs.chmodSync(dir, seedDirModes[rel] ?? 0o755);
    }
    const file = path.join(upper, f.path);
    fs.rmSync(file, { force: true });
    fs.writeFileSync(file, f.content, { mode: f.mode });
    fs.chmodSync(file, f.mode);
  }
}

// ---------------------------------------------------------------- up / down

export interface CtUpResult {
  lab: string;
  name: string;
  /** The LXC container's name on the host. */
  container: string;
  address: string;
  ssh: SshEndpoint;
  forwards: { host: number; guest: number }[];
  /** The node's init (systemd) as a host pid. */
  pid: number;
  consoleLog: string;
  imageKey: string;
  /** false when the node was already running with the same spec (a no-op). */
  changed: boolean;
  /** Seconds from lxc-start (or from this call, if unchanged) until ssh answered. */
  sshSeconds?: number;
}

/**
 * Start the node's container (or leave it running when its spec is unchanged), then wait for ssh.
 * The lab namespace and bridge must exist (net-up). Builds the container rootfs if it is missing.
 */
export async function ctUp(input: MachineSpecInput, opts: { wait?: boolean; timeoutSec?: number; rootfs?: ContainerRootfsManifest } = {}): Promise<CtUpResult> {
  const spec = parseMachineSpec(input);
  const p = ctPaths(spec.lab, spec.name);
  const container = containerOf(spec.lab, spec.name);
  const { netns } = netOf(spec);
  const ep = endpointOf(spec);
  const rootfs = opts.rootfs ?? (await ensureContainerRootfs());
  const plan = ctMountPlan(p, rootfs.rootfs);
  // preflightCt has refused a host without cgroups to limit the node with.
  const layout = cgroupLayout() ?? "v2";
  const config = lxcConfig(spec, plan, p, layout);
  const hook = netUpHook(spec);
  const fingerprint = fingerprintOf(spec, rootfs.key, config, hook);
  const prev = readState(p.state);
  const running = livePid(p.pid, container) !== undefined && (await lxcState(spec.lab, spec.name, netns)) === "RUNNING";
  const started = Date.now();
  const waitSsh = async (from: number) =>
    opts.wait === false
      ? undefined
      : waitNodeSsh(ep, p.console, from, {
          timeoutSec: opts.timeoutSec ?? VM_SSH_WAIT_SEC,
          gone: () => (livePid(p.pid, container) ? undefined : `container ${container} stopped`),
        });

  if (running && prev?.fingerprint === fingerprint) {
    // Same spec: a no-op, apart from restoring a forward that died.
    await restoreForwards(spec, preflightCt);
    const sshSeconds = await waitSsh(started);
    return result(spec, prev.initPid ?? 0, rootfs.key, false, sshSeconds);
  }
  if (running) note(`container: ${spec.name}'s spec changed; restarting it`);
  // Its forwards hold the ports preflight checks (a node that died leaves them running too: ours, by pidfile).
  await stopForwards(spec.lab, spec.name);
  await stopCt(spec.lab, spec.name, netns);

  const problems = await preflightCt(
    spec,
    forwardsOf(spec).map((f) => f.host),
  );
  if (!netnsExists(netns)) problems.push(`netns: ${netns} does not exist (run net-up first)`);
  if (problems.length) throw new PreflightError(problems);

  const l = labPaths(spec.lab);
  for (const d of [p.dir, p.lxcDir, l.logs, l.run]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
  const { publicKey } = await ensureLabKey(spec.lab);
  const hostKeys = await ensureHostKey(p.hostKey);
  fs.writeFileSync(p.knownHosts, knownHostsLine(spec, hostKeys.hostKeyPub));
  await writeLabKnownHosts(spec.lab);

  // Keep the node's disk (upper layer, containerd's store) across restarts unless the rootfs changed under it.
  if (prev && prev.rootfsKey !== rootfs.key) {
    for (const d of [p.upper, p.work, p.containerd]) await removeTree(d);
  }
  fs.mkdirSync(p.containerd, { recursive: true, mode: 0o711 });
  writeNodeFiles(p.upper, ctNodeFiles(spec, { authorizedKey: publicKey, ...hostKeys }));
  fs.writeFileSync(p.config, config);
  fs.writeFileSync(p.netHook, hook, { mode: 0o755 });
  fs.chmodSync(p.netHook, 0o755);

  fs.appendFileSync(p.console, `\n===== k8slab ct-up ${spec.name} ${new Date().toISOString()} container=${container} =====\n`);
  fs.rmSync(p.pid, { force: true });
  const ctStarted = Date.now();
  const r = await $`nsenter --net=/run/netns/${netns} lxc-start -P ${l.lxc} -n ${container} -d -p ${p.pid}`.nothrow().quiet();
  // -d returns once the container's init runs; the pidfile holds the monitor's pid.
  let initPid: number | undefined;
  for (let i = 0; i < 50 && !initPid; i++) {
    const info = await lxc(spec.lab, spec.name, "info", ["-pH"], netns);
    initPid = initPidOf(spec.lab, spec.name, Number.parseInt(info.stdout.trim(), 10));
    if (!initPid) await sleep(100);
  }
  if (r.exitCode !== 0 || !initPid || !livePid(p.pid, container)) {
    const lxcLog = fs.existsSync(p.lxcLog) ? fs.readFileSync(p.lxcLog, "utf8").trim().split("\n").slice(-10).join("\n") : "";
    throw new Error(`lxc-start of ${container} failed (exit ${r.exitCode}): ${r.stderr.trim()}\n${lxcLog}\n${consoleTail(p.console)}`);
  }
  const state: CtState = { fingerprint, rootfsKey: rootfs.key, sshPort: spec.sshPort, initPid, startedAt: new Date().toISOString() };
  fs.writeFileSync(p.state, `${JSON.stringify(state, null, 2)}\n`);
  await startForwards(spec);
  const sshSeconds = await waitSsh(ctStarted);
  return result(spec, initPid, rootfs.key, true, sshSeconds);
}

function result(spec: MachineSpec, pid: number, imageKey: string, changed: boolean, sshSeconds?: number): CtUpResult {
  return {
    lab: spec.lab,
    name: spec.name,
    container: containerOf(spec.lab, spec.name),
    address: spec.address,
    ssh: endpointOf(spec),
    forwards: forwardsOf(spec),
    pid,
    consoleLog: ctPaths(spec.lab, spec.name).console,
    imageKey,
    changed,
    ...(sshSeconds !== undefined ? { sshSeconds } : {}),
  };
}

/**
 * Stop the container, keep its disk: lxc-stop (SIGRTMIN+3: systemd powers off; LXC kills it after the
 * timeout), then lxc-stop -k; last, SIGKILL to its init (checked by its LXC cgroup), which ends the
 * container's pid namespace and so its monitor. Then LXC's cgroup folders for it, if LXC left them.
 */
async function stopCt(lab: string, name: string, netns?: string, timeoutSec = CT_STOP_TIMEOUT_SEC): Promise<void> {
  const p = ctPaths(lab, name);
  const container = containerOf(lab, name);
  if ((await lxcState(lab, name, netns)) !== "STOPPED") {
    if (timeoutSec > 0) await lxc(lab, name, "stop", ["-t", String(timeoutSec)], netns);
    // Killing the init ends the node's PID namespace: the kernel ends every process in it, pods included.
    if ((await lxcState(lab, name, netns)) !== "STOPPED") await lxc(lab, name, "stop", ["-k"], netns);
  }
  const init = initPidOf(lab, name, readState(p.state)?.initPid);
  if (init) {
    note(`container: ${container} did not stop; killing its init (pid ${init})`);
    process.kill(init, "SIGKILL");
  }
  // The monitor exits with the container.
  const deadline = Date.now() + 10_000;
  while (livePid(p.pid, container) && Date.now() < deadline) await sleep(100);
  const monitor = livePid(p.pid, container);
  if (monitor) throw new Error(`container ${container}: its monitor (pid ${monitor}) still runs after the stop; see ${p.lxcLog}`);
  fs.rmSync(p.pid, { force: true });
  for (const d of lxcCgroupDirs(container)) rmdirCgroup(d);
}

/**
 * Remove the node: container, forwards, LXC's folder and cgroups, its layers, containerd store and host
 * key. Its console log stays until the lab goes. Idempotent. Never removes the folder of a running node.
 */
export async function ctDown(ref: { lab: string; name: string; netns?: string }): Promise<void> {
  const p = ctPaths(ref.lab, ref.name);
  const netns = ref.netns ?? readLabNetns(ref.lab);
  await stopForwards(ref.lab, ref.name);
  // Its disk goes next: no clean poweroff (a node with pods was seen to need the full 30 s for it).
  await stopCt(ref.lab, ref.name, netns, CT_DOWN_STOP_TIMEOUT_SEC);
  // No lxc-destroy: with the overlay backend it deletes the upper dir itself; removing our own folders
  // (after checking nothing is mounted under them) is the same, and also works without the lab namespace.
  await removeTree(p.lxcDir);
  await removeTree(p.dir);
  removeLxcLock(labPaths(ref.lab).lxc, containerOf(ref.lab, ref.name));
  for (const d of lxcPivotDirs()) rmdirCgroup(d);
  for (const d of [labPaths(ref.lab).lxc, labPaths(ref.lab).containers]) {
    try {
      fs.rmdirSync(d);
    } catch {
      /* another node's, or gone */
    }
  }
  await writeLabKnownHosts(ref.lab);
}

/** LXC's lock file for a container, /run/lxc/lock/<lxcpath>/.<name>, which it leaves behind; and its folders once empty. */
export function lxcLockOf(lxcpath: string, container: string): string {
  return path.join(LXC_LOCK_ROOT, lxcpath, `.${container}`);
}
const LXC_LOCK_ROOT = "/run/lxc/lock";

function removeLxcLock(lxcpath: string, container: string): void {
  const lock = lxcLockOf(lxcpath, container);
  fs.rmSync(lock, { force: true });
  for (let d = path.dirname(lock); d.startsWith(`${LXC_LOCK_ROOT}/`); d = path.dirname(d)) {
    try {
      fs.rmdirSync(d);
    } catch {
      break; // not empty: another lab's or another tool's
    }
  }
}

export interface CtStatus {
  name: string;
  driver: "container";
  container: string;
  running: boolean;
  /** The node's init (systemd) as a host pid. */
  pid?: number;
  /** What the host's memory controller charges to the node (lxc.payload.<name>: memory.current on v2, memory.usage_in_bytes on v1). */
  memoryUsageMiB?: number;
  memoryLimitMiB?: number;
  startedAt?: string;
  ssh: SshEndpoint | undefined;
  forwards: { host: number; listening: boolean }[];
  consoleLog: string;
}

/** Names of the container nodes a lab has any trace of (node folder or monitor pidfile). */
export function labCtNames(lab: string): string[] {
  const l = labPaths(lab);
  const names = new Set<string>();
  if (fs.existsSync(l.containers)) for (const n of fs.readdirSync(l.containers)) names.add(n);
  if (fs.existsSync(l.run)) for (const f of fs.readdirSync(l.run)) if (f.endsWith(".lxc.pid")) names.add(f.slice(0, -".lxc.pid".length));
  return [...names].sort();
}

export function ctStatus(lab: string, name: string): CtStatus {
  const p: CtPaths = ctPaths(lab, name);
  const container = containerOf(lab, name);
  const monitor = livePid(p.pid, container);
  const state = readState(p.state);
  const pid = monitor ? initPidOf(lab, name, state?.initPid) : undefined;
  return {
    name,
    driver: "container",
    container,
    running: pid !== undefined,
    ...(pid ? { pid, ...memoryCharge(container) } : {}),
    ...(state ? { startedAt: state.startedAt } : {}),
    ssh: state ? endpointOf({ lab, name, sshPort: state.sshPort }) : undefined,
    forwards: forwardsStatus(lab, name),
    consoleLog: p.console,
  };
}

/** The monitor pid in the pidfile, if any (for tests: "is anything of this node left"). */
export const monitorPidOf = (lab: string, name: string) => readPid(ctPaths(lab, name).pid);

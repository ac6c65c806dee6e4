// The qemu driver: one VM per node on a qcow2 overlay of the shared image, its tap in the lab namespace,
// its sshd (and extra ports) forwarded to host loopback. vmUp/vmDown are idempotent.

import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import lockfile from "proper-lockfile";
import { $ } from "zx";
import { netnsOf, tapOf } from "../../core/names.ts";
import { labPaths, vmPaths } from "../../core/paths.ts";
import { forwardsStatus, listening, restoreForwards, startForwards, stopForwards } from "./forwards.ts";
import { ensureImage, type ImageManifest } from "./image.ts";
import { netnsExists, tapDown, tapUp } from "./labnet.ts";
import { PreflightError, preflightVm } from "./preflight.ts";
import { livePid, stopPid } from "./proc.ts";
import { type Accel, knownHostsLine, qemuCommand, qemuName, runFingerprint, SEED_LABEL, seedDirModes, seedFiles } from "./render.ts";
import { cacheRoot, forwardsOf, type MachineSpec, type MachineSpecInput, netOf, parseMachineSpec, type SshEndpoint, VM_SSH_WAIT_SEC } from "./spec.ts";
import { consoleTail, ensureHostKey, ensureLabKey, waitNodeSsh } from "./ssh.ts";

function note(line: string) {
  process.stderr.write(`${line}\n`);
}

// ---------------------------------------------------------------- accelerator

/**
 * KVM only if it really boots a kernel: start the image's kernel with no root filesystem and
 * expect its "Kernel panic" (then -no-reboot exits) within 10 s. A working KVM does it in about
 * a second; where KVM hangs (nested virtualisation) the timeout fires. The verdict is cached per
 * host boot and QEMU version. K8SLAB_ACCEL=kvm|tcg skips the probe.
 */
export async function detectAccel(kernel: string): Promise<{ accel: Accel; reason: string }> {
  const forced = process.env.K8SLAB_ACCEL;
  if (forced === "kvm" || forced === "tcg") return { accel: forced, reason: "K8SLAB_ACCEL" };
  if (!fs.existsSync("/dev/kvm")) return { accel: "tcg", reason: "/dev/kvm is missing" };
  const bootId = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  const qemuVersion = (await $`qemu-system-x86_64 --version`.quiet()).stdout.split("\n")[0];
  const cacheFile = path.join(cacheRoot(), "accel.json");
  try {
    const c = JSON.parse(fs.readFileSync(cacheFile, "utf8"));
    if (c.bootId === bootId && c.qemuVersion === qemuVersion) return { accel: c.accel, reason: `${c.reason} (cached)` };
  } catch {
    /* no verdict yet */
  }
  const r =
    await $`timeout 10 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nodefaults -no-user-config -display none -serial stdio -no-reboot -kernel ${kernel} -append ${"console=ttyS0 panic=-1"}`
      .nothrow()
      .quiet();
  const ok = r.exitCode === 0 && r.stdout.includes("Kernel panic");
  const verdict = {
    accel: (ok ? "kvm" : "tcg") as Accel,
    reason: ok
      ? "KVM booted a kernel"
      : r.exitCode === 124
        ? "KVM did not boot a kernel within 10 s"
        : `KVM failed (${(
            r.stderr
              .trim()
              .split("\n")
              .find((l) => /error|fail/i.test(l)) ?? `exit ${r.exitCode}`
          ).slice(0, 120)})`,
  };
  fs.mkdirSync(cacheRoot(), { recursive: true });
  fs.writeFileSync(cacheFile, `${JSON.stringify({ bootId, qemuVersion, ...verdict })}\n`);
  return verdict;
}

// The e2e tests and the CLI know the forwards' check from here.
export { listening };

// ---------------------------------------------------------------- VM state

interface VmState {
  fingerprint: string;
  imageKey: string;
  accel: Accel;
  startedAt: string;
}

function readState(file: string): VmState | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as VmState;
  } catch {
    return undefined;
  }
}

function fingerprintOf(spec: MachineSpec, imageKey: string, accel: Accel): string {
  return createHash("sha256")
    .update(JSON.stringify(runFingerprint(spec, imageKey, accel)))
    .digest("hex")
    .slice(0, 16);
}

/** Rewrite the lab's known_hosts from every VM's entry (so one file serves ssh -J node1 -> node2). */
export async function writeLabKnownHosts(lab: string): Promise<void> {
  const l = labPaths(lab);
  if (!fs.existsSync(l.dir)) return;
  // Parallel vm-ups of one lab: without the lock, one could rename an older listing over a newer one.
  const release = await lockfile.lock(l.knownHosts, { realpath: false, retries: { retries: 50, minTimeout: 50, maxTimeout: 200 } });
  try {
    writeKnownHostsNow(l);
  } finally {
    await release();
  }
}

function writeKnownHostsNow(l: ReturnType<typeof labPaths>): void {
  // VMs and container nodes keep their entry in their own folder.
  const entries = [l.vms, l.containers].flatMap((dir) =>
    fs.existsSync(dir)
      ? fs
          .readdirSync(dir)
          .sort()
          .map((n) => path.join(dir, n, "known_hosts"))
          .filter((f) => fs.existsSync(f))
          .map((f) => fs.readFileSync(f, "utf8"))
      : [],
  );
  const tmp = `${l.knownHosts}.${process.pid}`;
  fs.writeFileSync(tmp, entries.join(""));
  fs.renameSync(tmp, l.knownHosts);
}

/** The seed disk: a tiny read-only ext4 holding fs/<files>, applied by the guest's k8slab-seed unit. */
async function writeSeed(spec: MachineSpec, seedImage: string, keys: Parameters<typeof seedFiles>[1]): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-seed-"));
  try {
    const fsRoot = path.join(tmp, "fs");
    fs.mkdirSync(fsRoot, { mode: 0o755 });
    fs.chmodSync(fsRoot, 0o755);
    for (const f of seedFiles(spec, keys)) {
      const parts = f.path.split("/");
      for (let i = 1; i < parts.length; i++) {
        const rel = parts.slice(0, i).join("/");
        const dir = path.join(fsRoot, rel);
        if (!fs.existsSync(dir)) fs.mkdirSync(dir);
        fs.chmodSync(dir, seedDirModes[rel] ?? 0o755);
      }
      fs.writeFileSync(path.join(fsRoot, f.path), f.content);
      fs.chmodSync(path.join(fsRoot, f.path), f.mode);
    }
    fs.rmSync(seedImage, { force: true });
    await $`mkfs.ext4 -q -F -O ^has_journal -L ${SEED_LABEL} -d ${tmp} ${seedImage} 4M`.quiet();
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- up / down

export interface VmUpResult {
  lab: string;
  name: string;
  address: string;
  ssh: SshEndpoint;
  forwards: { host: number; guest: number }[];
  accel: Accel;
  pid: number;
  consoleLog: string;
  imageKey: string;
  /** false when the VM was already running with the same spec (a no-op). */
  changed: boolean;
  /** Seconds from QEMU start (or from this call, if unchanged) until ssh answered. */
  sshSeconds?: number;
}

export function endpointOf(spec: Pick<MachineSpec, "lab" | "name" | "sshPort">): SshEndpoint {
  return {
    host: "127.0.0.1",
    port: spec.sshPort,
    user: "root",
    keyFile: labPaths(spec.lab).key,
    knownHostsFile: labPaths(spec.lab).knownHosts,
  };
}

/**
 * Start the VM (or leave it running when its spec is unchanged), then wait for ssh.
 * The lab namespace and bridge must exist (netUp). Builds the image if it is missing.
 */
export async function vmUp(input: MachineSpecInput, opts: { wait?: boolean; timeoutSec?: number; image?: ImageManifest } = {}): Promise<VmUpResult> {
  const spec = parseMachineSpec(input);
  const p = vmPaths(spec.lab, spec.name);
  const { netns, bridge } = netOf(spec);
  const ep = endpointOf(spec);
  const marker = qemuName(spec);

  const image = opts.image ?? (await ensureImage());
  const { accel, reason } = await detectAccel(image.kernel);
  if (accel === "tcg") note(`qemu: ${reason}; using TCG (-accel tcg,thread=multi), guests run several times slower`);
  const fingerprint = fingerprintOf(spec, image.key, accel);
  const prev = readState(p.state);
  const running = livePid(p.pid, marker);
  const started = Date.now();
  const waitSsh = async (from: number) =>
    opts.wait === false
      ? undefined
      : waitNodeSsh(ep, p.console, from, {
          timeoutSec: opts.timeoutSec ?? VM_SSH_WAIT_SEC,
          gone: () => (livePid(p.pid, marker) ? undefined : `qemu for ${spec.name} exited`),
        });

  if (running && prev?.fingerprint === fingerprint) {
    // Same spec: a no-op, apart from restoring a forward that died.
    await restoreForwards(spec, preflightVm);
    const sshSeconds = await waitSsh(started);
    return result(spec, running, image.key, accel, false, sshSeconds);
  }
  if (running) {
    note(`qemu: ${spec.name}'s spec changed; restarting it`);
    await stopVm(spec.lab, spec.name);
  } else {
    // A VM that died (killed, a crash) leaves its port forwards running: ours (pidfiles), so end them before they block its ports.
    await stopForwards(spec.lab, spec.name);
  }

  const problems = await preflightVm(
    spec,
    forwardsOf(spec).map((f) => f.host),
  );
  if (!netnsExists(netns)) problems.push(`netns: ${netns} does not exist (run net-up first)`);
  if (problems.length) throw new PreflightError(problems);

  const l = labPaths(spec.lab);
  for (const d of [p.dir, l.logs, l.run]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
  const { publicKey } = await ensureLabKey(spec.lab);
  const hostKeys = await ensureHostKey(p.hostKey);
  fs.writeFileSync(p.knownHosts, knownHostsLine(spec, hostKeys.hostKeyPub));
  await writeLabKnownHosts(spec.lab);
  await writeSeed(spec, p.seed, { authorizedKey: publicKey, ...hostKeys });

  // Keep the overlay (the node's disk) across restarts unless the image changed under it; the containerd
  // store's overlay is made and dropped with it.
  if (!fs.existsSync(p.overlay) || prev?.imageKey !== image.key) {
    fs.rmSync(p.overlay, { force: true });
    fs.rmSync(p.containerdDisk, { force: true });
    await $`qemu-img create -q -f qcow2 -F qcow2 -b ${image.rootfs} ${p.overlay}`.quiet();
    if (spec.containerdStore) await $`qemu-img create -q -f qcow2 -F raw -b ${spec.containerdStore} ${p.containerdDisk}`.quiet();
  }
  await tapUp(netns, bridge, tapOf(spec.name));

  fs.appendFileSync(p.console, `\n===== k8slab vm-up ${spec.name} ${new Date().toISOString()} accel=${accel} =====\n`);
  fs.rmSync(p.pid, { force: true });
  const qemuStarted = Date.now();
  const bundle = spec.bundleDisk && fs.existsSync(spec.bundleDisk) ? spec.bundleDisk : undefined;
  const [bin, ...args] = qemuCommand(spec, image, p, accel, { containerd: fs.existsSync(p.containerdDisk), bundle });
  const q = await $`${bin} ${args}`.nothrow().quiet();
  const pid = livePid(p.pid, marker);
  if (q.exitCode !== 0 || pid === undefined) {
    throw new Error(`qemu for ${spec.name} did not start (exit ${q.exitCode}): ${q.stderr.trim()}\n${consoleTail(p.console)}`);
  }
  const state: VmState = { fingerprint, imageKey: image.key, accel, startedAt: new Date().toISOString() };
  fs.writeFileSync(p.state, `${JSON.stringify(state, null, 2)}\n`);
  await startForwards(spec);
  const sshSeconds = await waitSsh(qemuStarted);
  return result(spec, pid, image.key, accel, true, sshSeconds);
}

function result(spec: MachineSpec, pid: number, imageKey: string, accel: Accel, changed: boolean, sshSeconds?: number): VmUpResult {
  return {
    lab: spec.lab,
    name: spec.name,
    address: spec.address,
    ssh: endpointOf(spec),
    forwards: forwardsOf(spec),
    accel,
    pid,
    consoleLog: vmPaths(spec.lab, spec.name).console,
    imageKey,
    changed,
    ...(sshSeconds !== undefined ? { sshSeconds } : {}),
  };
}

/** Stop the VM's QEMU and forwards (by pid from our pidfiles), keep its disk. */
async function stopVm(lab: string, name: string): Promise<void> {
  const p = vmPaths(lab, name);
  await stopForwards(lab, name);
  // SIGTERM makes QEMU quit at once; the overlay is disposable or kept as is (cache=unsafe).
  await stopPid(p.pid, qemuName({ lab, name }), { graceMs: 10_000 });
  fs.rmSync(p.qmp, { force: true });
}

/** Remove the VM: QEMU, forwards, tap, overlay, seed, host key. Its console log stays until the lab goes. Idempotent. */
export async function vmDown(ref: { lab: string; name: string; netns?: string }): Promise<void> {
  const p = vmPaths(ref.lab, ref.name);
  await stopVm(ref.lab, ref.name);
  const netns = ref.netns ?? readLabNetns(ref.lab);
  if (netns) await tapDown(netns, tapOf(ref.name));
  fs.rmSync(p.dir, { recursive: true, force: true });
  await writeLabKnownHosts(ref.lab);
}

/** The namespace a lab's net-up recorded (net.json), else the default name. */
export function readLabNetns(lab: string): string {
  try {
    return JSON.parse(fs.readFileSync(path.join(labPaths(lab).dir, "net.json"), "utf8")).netns;
  } catch {
    return netnsOf(lab);
  }
}

export interface VmStatus {
  name: string;
  running: boolean;
  pid?: number;
  rssMiB?: number;
  accel?: Accel;
  startedAt?: string;
  ssh: SshEndpoint | undefined;
  forwards: { host: number; listening: boolean }[];
  consoleLog: string;
}

/** Names of the VMs a lab has any trace of (state folder or pidfile). */
export function labVmNames(lab: string): string[] {
  const l = labPaths(lab);
  const names = new Set<string>();
  if (fs.existsSync(l.vms)) for (const n of fs.readdirSync(l.vms)) names.add(n);
  if (fs.existsSync(l.run)) for (const f of fs.readdirSync(l.run)) names.add(f.split(".")[0]);
  return [...names].sort();
}

export function vmStatus(lab: string, name: string): VmStatus {
  const p = vmPaths(lab, name);
  const pid = livePid(p.pid, qemuName({ lab, name }));
  const state = readState(p.state);
  let rssMiB: number | undefined;
  if (pid) {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    rssMiB = m ? Math.round(Number(m[1]) / 1024) : undefined;
  }
  const kh = fs.existsSync(p.knownHosts) ? fs.readFileSync(p.knownHosts, "utf8") : "";
  const port = /^\[127\.0\.0\.1\]:(\d+)/.exec(kh)?.[1];
  return {
    name,
    running: pid !== undefined,
    ...(pid ? { pid, rssMiB } : {}),
    ...(state ? { accel: state.accel, startedAt: state.startedAt } : {}),
    ssh: port ? endpointOf({ lab, name, sshPort: Number(port) }) : undefined,
    forwards: forwardsStatus(lab, name),
    consoleLog: p.console,
  };
}

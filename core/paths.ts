// Where a lab's files live on this host: state (keys, VM disks, logs, the admin kubeconfig) and
// volatile run files (pidfiles, sockets). Derived from the lab's name and two roots only.
import { createHash } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { containerOf } from "./names.ts";

/** Lab state (keys, overlays, logs); everything under it is removed by `down`. */
export function stateRoot(): string {
  return process.env.K8SLAB_STATE || path.join(os.homedir(), ".local", "state", "k8slab");
}
/** Pidfiles and sockets: volatile, so a host reboot never leaves stale pids to act on. */
export function runRoot(): string {
  return process.env.K8SLAB_RUN || "/run/k8slab";
}

export interface LabPaths {
  dir: string;
  key: string;
  pubKey: string;
  knownHosts: string;
  logs: string;
  vms: string;
  /** Container nodes: each node's own layers and keys. */
  containers: string;
  /** LXC's lxcpath for the lab's containers (config, LXC's own files). Absolute: lxc-* name the control socket after it. */
  lxc: string;
  run: string;
  /** The cluster-admin kubeconfig the control-plane tier writes for this host's kubectl (RBAC: kubeadm's cluster-admins group). */
  adminKubeconfig: string;
  /** Break-glass: system:masters, which RBAC cannot take away. For when the admin's binding is broken. */
  superAdminKubeconfig: string;
  /** The random passphrase (0600) Pulumi encrypts this lab's secrets with: made at its first `up`, gone with `down`. */
  secretsPassphrase: string;
  /** The workshop scenario applied to the lab, if any (`k8slab break` writes it, `fix` removes it). */
  scenario: string;
  /** How the last `up` ended: whether its probes all passed (a no-change `up` then probes while Pulumi runs). */
  lastUp: string;
}
export function labPaths(lab: string): LabPaths {
  const dir = path.join(stateRoot(), "labs", lab);
  return {
    dir,
    key: path.join(dir, "id_ed25519"),
    pubKey: path.join(dir, "id_ed25519.pub"),
    knownHosts: path.join(dir, "known_hosts"),
    logs: path.join(dir, "logs"),
    vms: path.join(dir, "vms"),
    containers: path.join(dir, "containers"),
    lxc: path.join(dir, "lxc"),
    run: path.join(runRoot(), lab),
    adminKubeconfig: path.join(dir, "admin.kubeconfig"),
    superAdminKubeconfig: path.join(dir, "super-admin.kubeconfig"),
    secretsPassphrase: path.join(dir, "pulumi-passphrase"),
    scenario: path.join(dir, "scenario.json"),
    lastUp: path.join(dir, "last-up.json"),
  };
}

function socketPath(p: string): string {
  return p.length < 100 ? p : path.join(runRoot(), `${createHash("sha256").update(p).digest("hex").slice(0, 16)}.qmp`);
}

export interface VmPaths {
  dir: string;
  overlay: string;
  /** Overlay of the containerd store, when the VM was made with one (mounted at /var/lib/containerd). */
  containerdDisk: string;
  seed: string;
  hostKey: string;
  knownHosts: string;
  state: string;
  console: string;
  pid: string;
  qmp: string;
  fwdPid: (hostPort: number) => string;
  fwdLog: (hostPort: number) => string;
}
export function vmPaths(lab: string, name: string): VmPaths {
  const l = labPaths(lab);
  const dir = path.join(l.vms, name);
  return {
    dir,
    overlay: path.join(dir, "disk.qcow2"),
    containerdDisk: path.join(dir, "containerd.qcow2"),
    seed: path.join(dir, "seed.img"),
    hostKey: path.join(dir, "ssh_host_ed25519_key"),
    knownHosts: path.join(dir, "known_hosts"),
    state: path.join(dir, "state.json"),
    console: path.join(l.logs, `${name}.console.log`),
    pid: path.join(l.run, `${name}.qemu.pid`),
    // A unix socket path must fit in 108 bytes; long lab and node names fall back to a hash.
    qmp: socketPath(path.join(l.run, `${name}.qmp`)),
    ...forwardPaths(lab, name),
  };
}

/** A node's host-loopback forwards (socat), the same for VMs and containers. */
export function forwardPaths(lab: string, name: string): Pick<VmPaths, "fwdPid" | "fwdLog"> {
  const l = labPaths(lab);
  return {
    fwdPid: (p) => path.join(l.run, `${name}.fwd-${p}.pid`),
    fwdLog: (p) => path.join(l.logs, `${name}.fwd-${p}.log`),
  };
}

export interface CtPaths extends Pick<VmPaths, "fwdPid" | "fwdLog"> {
  /** The node's own folder: its overlay's upper and work dirs, its containerd dir, host key, state. */
  dir: string;
  /** Overlay upper layer: the node's writes, and the per-node files put there before each start. */
  upper: string;
  /** Overlay work dir; LXC's overlay backend puts it beside upper under this name. */
  work: string;
  /** Bind-mounted at /var/lib/containerd: containerd's overlayfs snapshots cannot sit on an overlay. */
  containerd: string;
  hostKey: string;
  knownHosts: string;
  state: string;
  /** LXC's folder for the container: lxcpath/<container>. */
  lxcDir: string;
  config: string;
  /** lxc.net.0.script.up: enslaves the host end of the veth to the lab bridge. */
  netHook: string;
  console: string;
  lxcLog: string;
  /** The lxc-start monitor's pid (lxc-start -p). */
  pid: string;
}
export function ctPaths(lab: string, name: string): CtPaths {
  const l = labPaths(lab);
  const dir = path.join(l.containers, name);
  const lxcDir = path.join(l.lxc, containerOf(lab, name));
  return {
    dir,
    upper: path.join(dir, "upper"),
    work: path.join(dir, "work"),
    containerd: path.join(dir, "containerd"),
    hostKey: path.join(dir, "ssh_host_ed25519_key"),
    knownHosts: path.join(dir, "known_hosts"),
    state: path.join(dir, "state.json"),
    lxcDir,
    config: path.join(lxcDir, "config"),
    netHook: path.join(lxcDir, "net-up"),
    console: path.join(l.logs, `${name}.console.log`),
    lxcLog: path.join(l.logs, `${name}.lxc.log`),
    pid: path.join(l.run, `${name}.lxc.pid`),
    ...forwardPaths(lab, name),
  };
}

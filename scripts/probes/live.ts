// The live LabAccess: ssh to the nodes, the bundle's kubectl, kubectl exec into pods, and the outside client in the lab's namespace; every call bounded in time.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { $ } from "zx";
import type { Lab, LabNode } from "../../infra/lab/index.js";
import { vmStatus } from "../machines/qemu.ts";
import { labPaths, type SshEndpoint } from "../machines/spec.ts";
import { sshOptions } from "../machines/ssh.ts";
import { bundleBinDir } from "../toolchain/paths.js";
import { adminKubeconfig } from "./contract.js";
import { shq } from "./parse.js";
import { splitSteps, stepsScript } from "./steps.js";
import type { Exec, LabAccess } from "./types.js";

/** Seconds on top of a step's own timeout for ssh or kubectl to connect before the local process is killed. */
const CONNECT_SLACK = 5;

export interface LiveOptions {
  /** Default: the admin kubeconfig the ControlPlane tier writes. */
  kubeconfig?: string;
}

export interface LiveAccess extends LabAccess {
  /** Ends the ssh connections kept open for the run. */
  close(): Promise<void>;
}

/** Runs argv on this host, killed after timeoutSec; never rejects. */
async function runLocal(where: string, command: string, argv: string[], timeoutSec: number): Promise<Exec> {
  const started = Date.now();
  const p = await $`${argv}`.nothrow().quiet().timeout(`${timeoutSec}s`, "SIGKILL");
  const cut = p.exitCode === null;
  return {
    where,
    command,
    exitCode: p.exitCode ?? 124,
    stdout: p.stdout,
    stderr: `${p.stderr}${cut ? `k8slab: cut off after ${timeoutSec} s\n` : ""}`,
    ms: Date.now() - started,
  };
}

const refused = (where: string, command: string, exitCode: number, why: string): Exec => ({ where, command, exitCode, stdout: "", stderr: `${why}\n`, ms: 0 });

/** How this host reaches a node's sshd: the VM's forwarded port (qemu), or the host from the lab file (ssh). */
export function sshEndpointOf(lab: Lab, node: LabNode): SshEndpoint | undefined {
  if (node.ssh) return { ...node.ssh, knownHostsFile: labPaths(lab.name).knownHosts };
  const vm = vmStatus(lab.name, node.name);
  return vm.running ? vm.ssh : undefined;
}

/**
 * A command run on the pod's node inside its first container's namespaces (mount, network, UTS,
 * IPC): the same namespaces `kubectl exec` enters through the API server, kubelet and runc, which
 * costs 1.5-15 s per call under TCG; this costs one ssh session on the node. The container's first
 * process is found in its cgroup (kubelet's systemd cgroup driver: kubepods.slice/[<qos>/]<pod>/cri-containerd-<id>.scope).
 */
export function enterContainer(containerID: string, command: string): string | undefined {
  const id = /^containerd:\/\/([0-9a-f]{64})$/.exec(containerID)?.[1];
  if (!id) return undefined;
  const procs = ["*", "*/*"].map((depth) => `/sys/fs/cgroup/kubepods.slice/${depth}/cri-containerd-${id}.scope/cgroup.procs`).join(" ");
  return [
    // Builtins only (read, not cat): a process start costs a fifth of a second on a busy emulated CPU.
    `pid=; for f in ${procs}; do [ -e "$f" ] && read -r pid <"$f" && break; done`,
    `[ -n "$pid" ] || { echo "k8slab: no process of container ${id.slice(0, 12)} on this node" >&2; exit 125; }`,
    `exec nsenter -t "$pid" -m -n -u -i -- bash -c ${shq(command)}`,
  ].join("\n");
}

export function liveAccess(lab: Lab, opts: LiveOptions = {}): LiveAccess {
  const kubeconfig = opts.kubeconfig ?? adminKubeconfig(lab.name);
  const kubectlBin = path.join(bundleBinDir(), "kubectl");
  // One ssh connection per node, shared by the run's many short commands (ControlMaster).
  // Per process: a second probe run at the same time must not close this run's connections.
  const control = ["-o", "ControlMaster=auto", "-o", `ControlPath=${path.join(os.tmpdir(), `k8slab-probe-${process.pid}-%C`)}`, "-o", "ControlPersist=30"];
  const endpoints = new Map<string, SshEndpoint | undefined>();
  const opened = new Map<string, Promise<unknown>>();

  const endpoint = (name: string) => {
    if (!endpoints.has(name)) {
      const node = lab.nodes.find((n) => n.name === name);
      endpoints.set(name, node && sshEndpointOf(lab, node));
    }
    return endpoints.get(name);
  };
  const sshArgv = (ep: SshEndpoint, remote: string) => ["ssh", "-n", ...sshOptions(ep, { connectTimeoutSec: CONNECT_SLACK }), ...control, `${ep.user}@${ep.host}`, remote];
  // The shared connection is opened once per node by a `true` of its own, and every command waits
  // for it: commands that race to open their own would each pay for a handshake (slow on emulated CPUs).
  const open = (name: string, ep: SshEndpoint) => {
    if (!opened.has(name)) opened.set(name, runLocal(name, "true", sshArgv(ep, "true"), CONNECT_SLACK * 2));
    return opened.get(name)!;
  };

  const kubectlMissing = () =>
    !fs.existsSync(kubeconfig) ? `no kubeconfig at ${kubeconfig}` : !fs.existsSync(kubectlBin) ? `no kubectl at ${kubectlBin}: \`npx k8slab toolchain\` builds it` : undefined;

  return {
    async onNode(name, command, timeoutSec) {
      const ep = endpoint(name);
      if (!ep) return refused(name, command, 255, `k8slab: no ssh endpoint for ${name}: the node is not running (\`npx k8slab status\`)`);
      await open(name, ep);
      // The remote timeout ends the command even when the ssh client is killed first.
      return runLocal(name, command, sshArgv(ep, `timeout ${timeoutSec} bash -c ${shq(command)}`), timeoutSec + CONNECT_SLACK);
    },
    async onNodeSteps(name, commands, timeoutSec) {
      return splitSteps(await this.onNode(name, stepsScript(commands), timeoutSec), commands);
    },
    async kubectl(args, timeoutSec) {
      const command = `kubectl ${args.map(shq).join(" ")}`;
      const missing = kubectlMissing();
      if (missing) return refused("kubectl", command, 1, `k8slab: ${missing}`);
      return runLocal("kubectl", command, [kubectlBin, `--kubeconfig=${kubeconfig}`, `--request-timeout=${timeoutSec}s`, ...args], timeoutSec + CONNECT_SLACK);
    },
    async inPod(pod, command, timeoutSec) {
      const where = `pod ${pod.namespace}/${pod.name}`;
      const enter = enterContainer(pod.containerID, command);
      if (!enter) return refused(where, command, 1, `k8slab: ${where} has no running container (container id "${pod.containerID}")`);
      return { ...(await this.onNode(pod.node, enter, timeoutSec)), where, command };
    },
    async inPodSteps(pod, commands, timeoutSec) {
      return splitSteps(await this.inPod(pod, stepsScript(commands), timeoutSec), commands);
    },
    async fromOutsideClient(command, timeoutSec) {
      // qemu labs: the lab's namespace holds the gateway address. ssh labs have no namespace: this host is the client.
      const inNetns = lab.driver.kind === "qemu" ? ["nsenter", `--net=/run/netns/${lab.netns}`] : [];
      return runLocal("outside client", command, ["timeout", "-k", "1", String(timeoutSec), ...inNetns, "sh", "-c", command], timeoutSec + 2);
    },
    async close() {
      await Promise.all(
        [...opened.keys()].map(async (name) => {
          const ep = endpoint(name)!;
          await $`ssh ${[...control, "-p", String(ep.port), "-O", "exit", `${ep.user}@${ep.host}`]}`.nothrow().quiet().timeout("5s");
        }),
      );
    },
  };
}

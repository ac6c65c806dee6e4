// The live LabAccess: an agent on each node over one ssh session, the bundle's kubectl, commands in pods entered from their node, and the outside client in the lab's namespace; every call bounded in time.
import fs from "node:fs";
import path from "node:path";
import { $ } from "zx";
import { type Lab, type LabNode, ownsMachines } from "../../core/index.ts";
import { labPaths } from "../../core/paths.ts";
import { shq } from "../../core/shell.ts";
import { ctStatus } from "../machines/lxc.ts";
import { vmStatus } from "../machines/qemu.ts";
import type { SshEndpoint } from "../machines/spec.ts";
import { sshDestination, sshOptions } from "../machines/ssh.ts";
import { bundleBinDir } from "../toolchain/paths.ts";
import { AGENT_SCRIPT, type Agent, startAgent } from "./agent.ts";
import { type ApiRelay, RELAY_TIMED_OUT, startApiRelay } from "./api-relay.ts";
import { PACE, paceFactor, TIMEOUT } from "./contract.ts";
import { splitSteps, stepsScript } from "./steps.ts";
import type { Exec, LabAccess, NodePace } from "./types.ts";

/** Seconds on top of a step's own timeout for kubectl to connect before the local process is killed. */
const CONNECT_SLACK = 5;
/** Seconds the relay waits on the API server (a new connection's TLS handshake included), before the node's pace stretches it. */
const RELAY_ANSWER_SEC = 60;
/** Seconds the agent's ssh session may take to connect. */
const AGENT_CONNECT_SEC = 20;
/** The agents' lock for writing answers, on the node's tmpfs. */
const AGENT_LOCK = "/run/k8slab-agent.lock";

export interface LiveOptions {
  /** Default: the admin kubeconfig the ControlPlane tier writes. */
  kubeconfig?: string;
}

export interface LiveAccess extends LabAccess {
  /** Ends the nodes' agents (their ssh sessions). */
  close(): Promise<void>;
}

/**
 * kubectl's own words when the API server did not answer in time (it was too busy, not unreachable):
 * its --request-timeout, a TLS handshake that did not finish, the server's own handler timeout.
 */
const API_TOO_SLOW = new RegExp(
  `context deadline exceeded|Client\\.Timeout exceeded|TLS handshake timeout|unable to return a response in the time allotted|i/o timeout|${RELAY_TIMED_OUT}`,
);

/**
 * Runs argv on this host, killed after timeoutSec; never rejects. `overran` when it was cut off, or
 * when its own `timeout` ended it at the deadline (exit 124), or its stderr says the other side was too slow (opts.tooSlow).
 */
async function runLocal(
  where: string,
  command: string,
  argv: string[],
  timeoutSec: number,
  opts: { deadlineSec?: number; tooSlow?: RegExp } = {},
): Promise<Exec> {
  const started = Date.now();
  const p = await $`${argv}`.nothrow().quiet().timeout(`${timeoutSec}s`, "SIGKILL");
  const ms = Date.now() - started;
  const cut = p.exitCode === null;
  const overran = cut || (p.exitCode === 124 && ms >= (opts.deadlineSec ?? timeoutSec) * 1000) || (p.exitCode !== 0 && !!opts.tooSlow?.test(p.stderr));
  return {
    where,
    command,
    exitCode: p.exitCode ?? 124,
    stdout: p.stdout,
    stderr: `${p.stderr}${cut ? `k8slab: cut off after ${timeoutSec} s\n` : ""}`,
    ms,
    ...(overran ? { overran: true as const } : {}),
  };
}

const refused = (where: string, command: string, exitCode: number, why: string, unreachable = false): Exec => ({
  where,
  command,
  exitCode,
  stdout: "",
  stderr: `${why}\n`,
  ms: 0,
  ...(unreachable ? { unreachable: true as const } : {}),
});

/** How this host reaches a node's sshd: the VM's or container's forwarded port (qemu, container), or the host from the lab file (ssh). */
export function sshEndpointOf(lab: Lab, node: LabNode): SshEndpoint | undefined {
  if (node.ssh) return { ...node.ssh, knownHostsFile: labPaths(lab.name).knownHosts };
  const machine = lab.driver.kind === "container" ? ctStatus(lab.name, node.name) : vmStatus(lab.name, node.name);
  return machine.running ? machine.ssh : undefined;
}

/**
 * A command run on the pod's node inside its first container's namespaces (mount, network, UTS,
 * IPC): the same namespaces `kubectl exec` enters through the API server, kubelet and runc, which
 * costs 1.5-15 s per call under TCG; this costs one command on the node's agent. The container's first
 * process is found in its cgroup (kubelet's systemd cgroup driver: kubepods.slice/[<qos>/]<pod>/cri-containerd-<id>.scope).
 */
export function enterContainer(containerID: string, command: string): string | undefined {
  const pid = containerPidScript(containerID);
  return pid && `${pid}\nexec nsenter -t "$pid" -m -n -u -i -- bash -c ${shq(command)}`;
}

/** Shell lines that set $pid (or $`into`) to the container's first process on its node (exit 125 when it has none). */
export function containerPidScript(containerID: string, into = "pid"): string | undefined {
  const id = /^containerd:\/\/([0-9a-f]{64})$/.exec(containerID)?.[1];
  if (!id) return undefined;
  // cgroup v2 (a VM) has one tree; a container node on a cgroup v1 host has kubepods.slice in name=systemd's.
  const procs = ["/sys/fs/cgroup", "/sys/fs/cgroup/systemd"]
    .flatMap((root) => ["*", "*/*"].map((depth) => `${root}/kubepods.slice/${depth}/cri-containerd-${id}.scope/cgroup.procs`))
    .join(" ");
  return [
    // Builtins only (read, not cat): a process start costs a fifth of a second on a busy emulated CPU.
    `${into}=; for f in ${procs}; do [ -e "$f" ] && read -r ${into} <"$f" && break; done`,
    `[ -n "$${into}" ] || { echo "k8slab: no process of container ${id.slice(0, 12)} on this node" >&2; exit 125; }`,
  ].join("\n");
}

/**
 * How long the node takes to start and end a process, in ms (the mean of three `/bin/true`, timed by the
 * node's own clock): what the probes' steps cost there more than anything else under TCG.
 */
export const PACE_COMMAND = "s=$EPOCHREALTIME; /bin/true; /bin/true; /bin/true; e=$EPOCHREALTIME; echo $(( (10#${e/[.,]/} - 10#${s/[.,]/}) / 3000 ))";

/**
 * Each node's pace for one probe run: measured once (PACE_COMMAND's answer), and used by every step there.
 * A node too busy to be measured gets the widest deadlines and is measured again on the next ask. A node where
 * a step overran was slower than its measure said (a sample from a quiet moment): from then on at least twice
 * the stretch it had, and measured again, so the tier's retry is not cut off the same way.
 */
export function nodePaces(measure: (node: string) => Promise<Exec | undefined> | undefined) {
  const paces = new Map<string, Promise<NodePace>>();
  const floors = new Map<string, number>();
  const paceOf = (name: string): Promise<NodePace> => {
    if (!paces.has(name))
      paces.set(
        name,
        (async () => {
          const read = await measure(name);
          if (read?.overran) {
            paces.delete(name);
            return { node: name, factor: PACE.maxFactor };
          }
          const ms = read?.exitCode === 0 ? Number.parseInt(read.stdout, 10) : Number.NaN;
          const processStartMs = Number.isFinite(ms) ? ms : undefined;
          const factor = Math.max(paceFactor(processStartMs), floors.get(name) ?? 1);
          return { node: name, ...(processStartMs !== undefined ? { processStartMs } : {}), factor };
        })(),
      );
    return paces.get(name)!;
  };
  const overranOn = async (names: string[]) => {
    for (const name of names) {
      const had = paces.has(name) ? (await paces.get(name)!).factor : 1;
      floors.set(name, Math.min(PACE.maxFactor, Math.max(floors.get(name) ?? 1, had * 2)));
      paces.delete(name);
    }
  };
  return { paceOf, overranOn };
}

export function liveAccess(lab: Lab, opts: LiveOptions = {}): LiveAccess {
  const kubeconfig = opts.kubeconfig ?? labPaths(lab.name).adminKubeconfig;
  const kubectlBin = path.join(bundleBinDir(), "kubectl");
  // One agent per node (one ssh session), started by the first command for that node.
  const agents = new Map<string, Agent>();
  const agentOn = (name: string): Agent | undefined => {
    // A node too busy to finish the login gets a new agent on its next command (the tier's retry).
    if (!agents.has(name) || agents.get(name)!.startOverran()) {
      const node = lab.nodes.find((n) => n.name === name);
      const ep = node && sshEndpointOf(lab, node);
      if (!ep) return undefined;
      // The handshake is paid once, on a guest that may be busy: a longer connect timeout than a step's slack.
      const remote = `exec perl -e ${shq(AGENT_SCRIPT)} ${AGENT_LOCK}`;
      agents.set(name, startAgent(name, ["ssh", "-T", ...sshOptions(ep, { connectTimeoutSec: AGENT_CONNECT_SEC }), ...sshDestination(ep), remote]));
    }
    return agents.get(name);
  };

  // Each node's pace, measured by its agent's first command; every later step there waits for it.
  const { paceOf, overranOn } = nodePaces((name) => agentOn(name)?.run(PACE_COMMAND, TIMEOUT.read));
  const stretch = async (timeoutSec: number, nodes: string[]) =>
    Math.ceil(timeoutSec * Math.max(...(await Promise.all(nodes.map(paceOf))).map((p) => p.factor)));
  // The API server runs on the control-plane node; the outside client's requests cross any node.
  const apiNode = [lab.controlPlane.name];
  const allNodes = lab.nodes.map((n) => n.name);

  // kubectl reaches the API server through the relay (api-relay.ts): one TLS handshake per connection, paced.
  let relay: Promise<ApiRelay | undefined> | undefined;
  const relayedKubeconfig = async () => {
    relay ??= startApiRelay(kubeconfig, () => stretch(RELAY_ANSWER_SEC, apiNode)).catch(() => undefined);
    return (await relay)?.kubeconfig ?? kubeconfig;
  };
  const kubectlMissing = () =>
    !fs.existsSync(kubeconfig)
      ? `no kubeconfig at ${kubeconfig}`
      : !fs.existsSync(kubectlBin)
        ? `no kubectl at ${kubectlBin}: \`npx k8slab toolchain\` builds it`
        : undefined;

  return {
    async onNode(name, command, timeoutSec) {
      const agent = agentOn(name);
      if (!agent) return refused(name, command, 255, `k8slab: no ssh endpoint for ${name}: the node is not running (\`npx k8slab status\`)`, true);
      const r = await agent.run(command, await stretch(timeoutSec, [name]));
      if (r.overran) await overranOn([name]);
      return r;
    },
    async onNodeSteps(name, commands, timeoutSec) {
      return splitSteps(await this.onNode(name, stepsScript(commands), timeoutSec), commands);
    },
    async kubectl(args, timeoutSec) {
      const command = `kubectl ${args.map(shq).join(" ")}`;
      const missing = kubectlMissing();
      if (missing) return refused("kubectl", command, 1, `k8slab: ${missing}`);
      timeoutSec = await stretch(timeoutSec, apiNode);
      const r = await runLocal(
        "kubectl",
        command,
        [kubectlBin, `--kubeconfig=${await relayedKubeconfig()}`, `--request-timeout=${timeoutSec}s`, ...args],
        timeoutSec + CONNECT_SLACK,
        { tooSlow: API_TOO_SLOW },
      );
      if (r.overran) await overranOn(apiNode);
      return r;
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
      // qemu and container labs: the lab's namespace holds the gateway address. ssh labs have no namespace: this host is the client.
      const inNetns = ownsMachines(lab) ? ["nsenter", `--net=/run/netns/${lab.netns}`] : [];
      timeoutSec = await stretch(timeoutSec, allNodes);
      const r = await runLocal("outside client", command, ["timeout", "-k", "1", String(timeoutSec), ...inNetns, "sh", "-c", command], timeoutSec + 2, {
        deadlineSec: timeoutSec,
      });
      if (r.overran) await overranOn(allNodes);
      return r;
    },
    pace: () => Promise.all(allNodes.map(paceOf)),
    async close() {
      await Promise.all([...agents.values()].map((a) => a.close()));
      await (await relay)?.close();
    },
  };
}

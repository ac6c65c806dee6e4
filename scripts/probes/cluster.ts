// Cluster lookups the tiers share (pods, Services, endpoints), as small kubectl reads with readable output.

import { TOOLBOX } from "../../core/names.ts";
import { TIMEOUT } from "./contract.ts";
import { parseRows } from "./parse.ts";
import { broken, type ClusterReader, type Exec, type PodRef, type ProbeContext } from "./types.ts";

export interface Pod extends PodRef {
  ip: string;
  phase: string;
  ready: boolean;
}

export interface Endpoint {
  ip: string;
  ready: boolean;
  node: string;
  pod: string;
}

export interface ServiceInfo {
  clusterIP: string;
  port: number;
  nodePort?: number;
}

// jsonpath templates print one tab-separated row per object: short, readable evidence.
const POD_ROWS =
  '{range .items[*]}{.metadata.name}{"\\t"}{.spec.nodeName}{"\\t"}{.status.podIP}{"\\t"}{.status.phase}{"\\t"}{.status.conditions[?(@.type=="Ready")].status}{"\\t"}{.status.containerStatuses[0].containerID}{"\\n"}{end}';
const SERVICE_ROW = '{.spec.clusterIP}{"\\t"}{.spec.ports[0].port}{"\\t"}{.spec.ports[0].nodePort}{"\\n"}';
const ENDPOINT_ROWS =
  '{range .items[*]}{range .endpoints[*]}{.addresses[0]}{"\\t"}{.conditions.ready}{"\\t"}{.nodeName}{"\\t"}{.targetRef.name}{"\\n"}{end}{end}';

/** Pods of a namespace, all of them when there is no selector. */
export const podsArgs = (namespace: string, selector?: string) => [
  "get",
  "pods",
  "-n",
  namespace,
  ...(selector ? ["-l", selector] : []),
  "-o",
  `jsonpath=${POD_ROWS}`,
];
export const serviceArgs = (namespace: string, name: string) => ["get", "service", name, "-n", namespace, "-o", `jsonpath=${SERVICE_ROW}`];
export const endpointsArgs = (namespace: string, service: string) => [
  "get",
  "endpointslices",
  "-n",
  namespace,
  "-l",
  `kubernetes.io/service-name=${service}`,
  "-o",
  `jsonpath=${ENDPOINT_ROWS}`,
];

function read(what: string, exec: Exec): string {
  if (exec.exitCode !== 0) {
    broken(
      what,
      (exec.stderr.trim() || `kubectl exit ${exec.exitCode}`).split("\n")[0],
      "check that the API server answers: `kubectl get nodes` with the lab's kubeconfig",
    );
  }
  return exec.stdout;
}

/** Pods matching a selector (all phases). */
export async function podsOf(ctx: ClusterReader, namespace: string, selector?: string): Promise<Pod[]> {
  const out = read(`pods in ${namespace}${selector ? ` (${selector})` : ""}`, await ctx.kubectl(podsArgs(namespace, selector), TIMEOUT.read));
  return parseRows(out).map(([name, node, ip, phase, ready, containerID]) => ({
    namespace,
    name,
    node,
    ip,
    phase,
    ready: ready === "True",
    containerID: containerID ?? "",
  }));
}

export const isServing = (p: Pod) => p.phase === "Running" && p.ready && !!p.ip;

/** The toolbox pod on a node, ready to exec into; a broken hop when there is none. */
export async function toolboxOn(ctx: ClusterReader, node: string): Promise<Pod> {
  const pods = await podsOf(ctx, TOOLBOX.namespace, TOOLBOX.selector);
  const pod = pods.find((p) => p.node === node && isServing(p));
  if (!pod) {
    const seen = pods.filter((p) => p.node === node).map((p) => `${p.name} ${p.phase}${p.ready ? "" : " (not ready)"}`);
    broken(
      `toolbox pod on ${node}`,
      seen.length ? `not ready: ${seen.join(", ")}` : `none (DaemonSet ${TOOLBOX.namespace}/${TOOLBOX.daemonSet}, ${TOOLBOX.selector})`,
      `the probes send from the toolbox DaemonSet's pods: \`kubectl -n ${TOOLBOX.namespace} get ds,pods -o wide\`; \`kubectl -n ${TOOLBOX.namespace} describe pod\` shows why one does not start`,
    );
  }
  return pod;
}

export async function serviceOf(ctx: ClusterReader, namespace: string, name: string): Promise<ServiceInfo> {
  const [row] = parseRows(read(`Service ${namespace}/${name}`, await ctx.kubectl(serviceArgs(namespace, name), TIMEOUT.read)));
  if (!row?.[0] || row[0] === "None") broken(`Service ${namespace}/${name}`, "has no ClusterIP", `\`kubectl -n ${namespace} get service ${name} -o yaml\``);
  return { clusterIP: row[0], port: Number(row[1]), ...(row[2] ? { nodePort: Number(row[2]) } : {}) };
}

export const readyIPs = (endpoints: Endpoint[]) =>
  endpoints
    .filter((e) => e.ready)
    .map((e) => e.ip)
    .sort();

/**
 * The Service's endpoints as they are now, for comparing with what CoreDNS answered or kube-proxy
 * wrote (`seen`, ready IPs). The run read them when it began: when their ready IPs disagree with
 * `seen`, a pod may have changed readiness since, so they are read again and that read decides.
 */
export async function endpointsNow(
  ctx: Pick<ProbeContext, "kubectlAgain">,
  namespace: string,
  service: string,
  first: Endpoint[],
  seen: string[],
): Promise<Endpoint[]> {
  if (readyIPs(first).join() === [...seen].sort().join()) return first;
  return endpointsOf({ kubectl: ctx.kubectlAgain }, namespace, service);
}

/** The Service's endpoints from its EndpointSlices (what kube-proxy and CoreDNS read). */
export async function endpointsOf(ctx: Pick<ClusterReader, "kubectl">, namespace: string, service: string): Promise<Endpoint[]> {
  const out = read(`EndpointSlices of ${namespace}/${service}`, await ctx.kubectl(endpointsArgs(namespace, service), TIMEOUT.read));
  return parseRows(out)
    .filter(([ip]) => ip)
    .map(([ip, ready, node, pod]) => ({ ip, ready: ready !== "false", node: node ?? "", pod: pod ?? "" }));
}

/** "pod 172.30.1.5 on node1". */
export const describePod = (p: { name: string; ip: string; node: string }) => `${p.name} ${p.ip} on ${p.node}`;

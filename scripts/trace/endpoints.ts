// What a trace goes from and to, as the learner writes it, and what that is on the live lab.
//   WORKLOAD or WORKLOAD/INDEX  a pod (business-manager, data-product, toolbox, coredns; INDEX counts from 0 in name order)
//   svc/NAME                    a Service's ClusterIP (a workload's, or kube-dns)
//   node/NAME                   a node's LAN address
//   nodeport/NODE               the NodePort Service on that node's LAN address
//   ingress                     the ingress controller on the first node's port 80, with the lab's Host
//   client                      the outside client (the LAN's gateway, in the lab's namespace)
import type { Lab, LabNode } from "../../core/index.ts";
import { appSelector, CLUSTER_DNS, headlessService, TOOLBOX, WORKLOAD_NAMESPACE } from "../../core/names.ts";
import { endpointsOf, isServing, type Pod, podsOf, serviceOf } from "../probes/cluster.ts";
import type { ClusterReader } from "../probes/types.ts";

export type EndpointSpec =
  | { kind: "pod"; workload: string; index: number }
  | { kind: "svc"; name: string }
  | { kind: "node"; name: string }
  | { kind: "nodeport"; node: string }
  | { kind: "ingress" }
  | { kind: "client" };

export type Proto = "icmp" | "tcp" | "udp";

export const ENDPOINT_FORMS = "WORKLOAD[/INDEX], svc/NAME, node/NAME, nodeport/NODE, ingress or client";

/** Pod workloads a trace may start or end at: namespace and selector. */
export function traceWorkloads(lab: Lab): Record<string, { namespace: string; selector: string }> {
  const { businessManager, dataProduct } = lab.workloads;
  return {
    [businessManager.name]: { namespace: WORKLOAD_NAMESPACE, selector: appSelector(businessManager.name) },
    [dataProduct.name]: { namespace: WORKLOAD_NAMESPACE, selector: appSelector(dataProduct.name) },
    [TOOLBOX.daemonSet]: { namespace: TOOLBOX.namespace, selector: TOOLBOX.selector },
    [CLUSTER_DNS.deployment]: { namespace: CLUSTER_DNS.namespace, selector: CLUSTER_DNS.selector },
  };
}

/** The lab's Services a trace may aim at, by name: namespace, and the workload behind it. */
function traceServices(lab: Lab): Record<string, { namespace: string; workload: string }> {
  const { businessManager, dataProduct } = lab.workloads;
  return {
    [businessManager.name]: { namespace: WORKLOAD_NAMESPACE, workload: businessManager.name },
    [dataProduct.name]: { namespace: WORKLOAD_NAMESPACE, workload: dataProduct.name },
    [CLUSTER_DNS.service]: { namespace: CLUSTER_DNS.namespace, workload: CLUSTER_DNS.deployment },
  };
}

/** Parses one endpoint; a string is the reason it is not one (checked against the lab file, nothing live). */
export function parseEndpoint(lab: Lab, text: string): EndpointSpec | string {
  const nodeNamed = (name: string) => lab.nodes.some((n) => n.name === name);
  const nodes = lab.nodes.map((n) => n.name).join(", ");
  if (text === "client") return { kind: "client" };
  if (text === "ingress") return { kind: "ingress" };
  const [head, rest, ...more] = text.split("/");
  if (more.length) return `"${text}": one "/" at most (${ENDPOINT_FORMS})`;
  if (head === "svc" || head === "node" || head === "nodeport") {
    if (!rest) return `"${text}": a name after "${head}/"`;
    if (head === "svc") {
      if (rest === headlessService(lab.workloads.dataProduct.name)) return `"${text}": a headless Service has no ClusterIP to trace to; trace to a pod`;
      if (!traceServices(lab)[rest]) return `"${text}": no such Service (${Object.keys(traceServices(lab)).join(", ")})`;
      return { kind: "svc", name: rest };
    }
    if (!nodeNamed(rest)) return `"${text}": no node ${rest} (${nodes})`;
    return head === "node" ? { kind: "node", name: rest } : { kind: "nodeport", node: rest };
  }
  const workloads = traceWorkloads(lab);
  if (!workloads[head]) return `"${text}": not an endpoint (${ENDPOINT_FORMS}; workloads: ${Object.keys(workloads).join(", ")})`;
  if (rest !== undefined && !/^\d{1,3}$/.test(rest)) return `"${text}": the pod's index is a number (0 is the first pod by name)`;
  return { kind: "pod", workload: head, index: rest === undefined ? 0 : Number(rest) };
}

/** The protocol a trace uses when none is given, and whether `proto` can get an answer from `to`. */
export function protoFor(lab: Lab, to: EndpointSpec, proto?: Proto, port?: number): { proto: Proto; port?: number } | string {
  const servicePort = (name: string) =>
    name === lab.workloads.businessManager.name
      ? lab.workloads.businessManager.port
      : name === lab.workloads.dataProduct.name
        ? lab.workloads.dataProduct.port
        : 53;
  switch (to.kind) {
    case "pod":
    case "node":
    case "client":
      if ((proto ?? "icmp") === "icmp") return port ? "--port needs --proto tcp or udp" : { proto: "icmp" };
      if (!port) return `--proto ${proto} to ${to.kind === "pod" ? "a pod" : "a node"} needs --port`;
      return { proto: proto!, port };
    case "svc": {
      const p = proto ?? (to.name === CLUSTER_DNS.service ? "udp" : "tcp");
      if (p === "icmp") return `svc/${to.name}: a ClusterIP answers only its ports, not ping (kube-proxy DNATs TCP and UDP): use --proto tcp or udp`;
      if (p === "udp" && to.name !== CLUSTER_DNS.service) return `svc/${to.name}: serves TCP only`;
      return { proto: p, port: port ?? servicePort(to.name) };
    }
    case "nodeport":
    case "ingress":
      if (proto && proto !== "tcp") return `${to.kind === "ingress" ? "ingress" : `nodeport/${to.node}`}: HTTP over TCP only`;
      if (port) return `${to.kind === "ingress" ? "ingress" : "nodeport"}: the port is the lab's (--port is for pods and nodes)`;
      return { proto: "tcp", port: to.kind === "ingress" ? 80 : lab.workloads.businessManager.nodePort };
  }
}

/** Where a packet starts or ends: a pod (entered from its node), a node's host namespace, or the outside client. */
export type Place = { kind: "pod"; pod: Pod } | { kind: "node"; node: LabNode } | { kind: "client" };

export const placeNode = (p: Place): string | undefined => (p.kind === "pod" ? p.pod.node : p.kind === "node" ? p.node.name : undefined);
export const placeName = (p: Place) => (p.kind === "pod" ? `pod ${p.pod.name}` : p.kind === "node" ? p.node.name : "client");

/** A resolved target: the address packets are sent to, and the places that may answer (a Service's backends). */
export interface Target {
  address: string;
  /** Where the address is DNATed to a backend (a Service: the sender's node; a NodePort: that node). */
  natOn?: "sender" | string;
  candidates: Place[];
  /** For the ingress: the pods nginx forwards to (a second connection, from the node). */
  upstreams?: Pod[];
  hostHeader?: string;
}

async function podOf(ctx: ClusterReader, lab: Lab, spec: { workload: string; index: number }): Promise<Pod | string> {
  const w = traceWorkloads(lab)[spec.workload];
  const pods = (await podsOf(ctx, w.namespace, w.selector)).filter(isServing).sort((a, b) => a.name.localeCompare(b.name));
  if (!pods.length) return `${spec.workload}: no running, ready pod`;
  const pod = pods[spec.index];
  if (!pod) return `${spec.workload}/${spec.index}: there are ${pods.length} ready pods (0-${pods.length - 1})`;
  return pod;
}

export async function resolveSource(ctx: ClusterReader, lab: Lab, spec: EndpointSpec): Promise<Place | string> {
  switch (spec.kind) {
    case "pod": {
      const pod = await podOf(ctx, lab, spec);
      return typeof pod === "string" ? pod : { kind: "pod", pod };
    }
    case "node":
      return { kind: "node", node: lab.nodes.find((n) => n.name === spec.name)! };
    case "client":
      return { kind: "client" };
    default:
      return `a trace starts at a pod, a node or the client, not at ${spec.kind}`;
  }
}

export async function resolveTarget(ctx: ClusterReader, lab: Lab, spec: EndpointSpec): Promise<Target | string> {
  const backends = async (service: string, namespace: string, workload: string) => {
    const w = traceWorkloads(lab)[workload];
    const ready = new Set((await endpointsOf(ctx, namespace, service)).filter((e) => e.ready).map((e) => e.ip));
    return (await podsOf(ctx, w.namespace, w.selector)).filter((p) => ready.has(p.ip));
  };
  switch (spec.kind) {
    case "pod": {
      const pod = await podOf(ctx, lab, spec);
      return typeof pod === "string" ? pod : { address: pod.ip, candidates: [{ kind: "pod", pod }] };
    }
    case "node": {
      const node = lab.nodes.find((n) => n.name === spec.name)!;
      return { address: node.address, candidates: [{ kind: "node", node }] };
    }
    case "client":
      return "the outside client answers nothing; trace from it instead";
    case "svc": {
      const s = traceServices(lab)[spec.name];
      const svc = await serviceOf(ctx, s.namespace, spec.name);
      const pods = await backends(spec.name, s.namespace, s.workload);
      if (!pods.length) return `svc/${spec.name}: no ready endpoint`;
      return { address: svc.clusterIP, natOn: "sender", candidates: pods.map((pod) => ({ kind: "pod", pod })) };
    }
    case "nodeport": {
      const node = lab.nodes.find((n) => n.name === spec.node)!;
      const bm = lab.workloads.businessManager.name;
      const pods = await backends(bm, WORKLOAD_NAMESPACE, bm);
      if (!pods.length) return `nodeport/${spec.node}: ${bm} has no ready endpoint`;
      return { address: node.address, natOn: node.name, candidates: pods.map((pod) => ({ kind: "pod", pod })) };
    }
    case "ingress": {
      const node = lab.nodes[0];
      const pods = await backends(lab.ingress.service, WORKLOAD_NAMESPACE, lab.ingress.service);
      if (!pods.length) return `ingress: ${lab.ingress.service} has no ready endpoint`;
      return { address: node.address, candidates: [{ kind: "node", node }], upstreams: pods, hostHeader: lab.ingress.host };
    }
  }
}

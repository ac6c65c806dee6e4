// `k8slab bench`: what each path costs on the live lab. TCP throughput pod to pod (iperf3 from the
// toolbox image), same-node and cross-node; HTTP request latency (p50/p99 of curl's own timing) to a
// business-manager pod on the same node and on the other, through its ClusterIP and through the
// ingress. Several runs each; every figure also as a ratio to same-node.
import type { Lab } from "../../core/index.ts";
import { appSelector, TOOLBOX, WORKLOAD_NAMESPACE } from "../../core/names.ts";
import { shq } from "../../core/shell.ts";
import { isServing, type Pod, podsOf, serviceOf } from "../probes/cluster.ts";
import { containerPidScript } from "../probes/live.ts";
import { type LabAccess, readerOf } from "../probes/types.ts";

export interface BenchRow {
  path: string;
  /** Mbit/s per run (throughput rows). */
  mbps?: number[];
  /** Milliseconds per request, every run's requests together (latency rows). */
  ms?: number[];
  note: string;
}

export interface BenchReport {
  lab: string;
  backend: string;
  kubeProxyMode: string;
  runs: number;
  rows: BenchRow[];
  startedAt: string;
  seconds: number;
}

export const IPERF_SECONDS = 5;
export const REQUESTS_PER_RUN = 50;
/** business-manager's own health check: answered without calling data-product, so the path is all that is measured. */
const PATH = "/healthz";

/** iperf3 -J: the receiver's bits per second, as Mbit/s. */
export function parseIperf(json: string): number | undefined {
  try {
    const bps = JSON.parse(json)?.end?.sum_received?.bits_per_second;
    return typeof bps === "number" ? Math.round(bps / 1e4) / 100 : undefined;
  } catch {
    return undefined;
  }
}

/** curl -w '%{time_total}\n' for each request of a URL range: seconds per line, as milliseconds (failed requests, 0, left out). */
export const parseTimes = (text: string) =>
  text
    .split("\n")
    .map((l) => Number(l.trim()))
    .filter((s) => Number.isFinite(s) && s > 0)
    .map((s) => Math.round(s * 100000) / 100);

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : Number.NaN;
}
const median = (v: number[]) => percentile(v, 50);

/** The comparison table: each path's figures and its ratio to the same-node one of its kind. */
export function renderBench(r: BenchReport): string {
  const tput = r.rows.filter((x) => x.mbps);
  const lat = r.rows.filter((x) => x.ms);
  const base = { mbps: median(tput[0]?.mbps ?? []), p50: percentile(lat[0]?.ms ?? [], 50) };
  const lines = [
    `bench of lab ${r.lab} (flannel ${r.backend}, kube-proxy ${r.kubeProxyMode}), ${r.runs} runs each, ${r.seconds} s`,
    "",
    "| path | throughput Mbit/s (median) | vs same-node | runs |",
    "| --- | --- | --- | --- |",
    ...tput.map((x) => `| ${x.path} | ${median(x.mbps!)} | ${(median(x.mbps!) / base.mbps).toFixed(2)} | ${x.mbps!.join(", ")} |`),
    "",
    "| path | latency p50 ms | p99 ms | p50 vs same-node | requests |",
    "| --- | --- | --- | --- | --- |",
    ...lat.map(
      (x) => `| ${x.path} | ${percentile(x.ms!, 50)} | ${percentile(x.ms!, 99)} | ${(percentile(x.ms!, 50) / base.p50).toFixed(2)} | ${x.ms!.length} |`,
    ),
    "",
    ...r.rows.map((x) => `${x.path}: ${x.note}`),
  ];
  return `${lines.join("\n")}\n`;
}

/** A command in `net`'s network namespace with `tools`' files (the toolbox's iperf3 and curl in any pod's network). */
const withTools = (tools: Pod, net: Pod, command: string) =>
  [
    containerPidScript(tools.containerID, "tools")!,
    containerPidScript(net.containerID)!,
    `nsenter --mount=/proc/$tools/ns/mnt --net=/proc/$pid/ns/net -- sh -c ${shq(command)}`,
  ].join("\n");

export async function runBench(lab: Lab, access: LabAccess, runs: number): Promise<BenchReport> {
  const started = Date.now();
  const reader = readerOf(lab, access);
  const [n1, n2] = lab.nodes;
  const toolbox = (await podsOf(reader, TOOLBOX.namespace, TOOLBOX.selector)).filter(isServing);
  const bms = (await podsOf(reader, WORKLOAD_NAMESPACE, appSelector(lab.workloads.businessManager.name))).filter(isServing);
  const on = (node: string) => toolbox.find((p) => p.node === node);
  const [t1, t2] = [on(n1.name), on(n2.name)];
  const bmSame = bms.find((p) => p.node === n1.name);
  const bmOther = bms.find((p) => p.node === n2.name);
  if (!t1 || !t2 || !bmSame || !bmOther)
    throw new Error(`bench needs a ready toolbox pod and a ready ${lab.workloads.businessManager.name} pod on both ${n1.name} and ${n2.name}`);
  const svc = await serviceOf(reader, WORKLOAD_NAMESPACE, lab.workloads.businessManager.name);
  const port = lab.workloads.businessManager.port;

  // Throughput: an iperf3 server in node1's toolbox (one test, then it exits), a client in a pod on the same node
  // (business-manager's network, the toolbox's iperf3) or in node2's toolbox.
  const iperf = async (client: { tools: Pod; net: Pod }) => {
    await access.onNode(n1.name, withTools(t1, t1, "iperf3 -s -1 -D -p 5201"), 20);
    const r = await access.onNode(
      client.tools.node,
      withTools(client.tools, client.net, `sleep 0.5; iperf3 -J -c ${t1.ip} -p 5201 -t ${IPERF_SECONDS}`),
      IPERF_SECONDS + 30,
    );
    return parseIperf(r.stdout);
  };
  // Latency: one curl per run, REQUESTS_PER_RUN requests (a URL range), each its own connection.
  const timesCommand = (url: string, host?: string) =>
    `curl -s -o /dev/null -m 5 -H 'Connection: close' ${host ? `-H ${shq(`Host: ${host}`)} ` : ""}-w '%{time_total}\\n' ${shq(`${url}?bench=[1-${REQUESTS_PER_RUN}]`)}`;
  const fromToolbox = async (url: string) => parseTimes((await access.onNode(n1.name, withTools(t1, t1, timesCommand(url)), 120)).stdout);
  const fromClient = async (url: string, host: string) => parseTimes((await access.fromOutsideClient(timesCommand(url, host), 120)).stdout);

  const rows: BenchRow[] = [
    { path: "pod -> pod, same node", mbps: [], note: `iperf3 ${IPERF_SECONDS} s from ${bmSame.name}'s network to ${t1.name} on ${n1.name}: the bridge only` },
    {
      path: "pod -> pod, cross-node",
      mbps: [],
      note: `iperf3 ${IPERF_SECONDS} s from ${t2.name} on ${n2.name} to ${t1.name} on ${n1.name}: across flannel's ${lab.pods.flannel.backend}`,
    },
    { path: "HTTP, same node", ms: [], note: `GET ${PATH} of ${bmSame.name} ${bmSame.ip} from ${t1.name}` },
    { path: "HTTP, cross-node", ms: [], note: `GET ${PATH} of ${bmOther.name} ${bmOther.ip} from ${t1.name}` },
    {
      path: "HTTP, ClusterIP",
      ms: [],
      note: `GET ${PATH} of ${svc.clusterIP}:${svc.port} from ${t1.name}: kube-proxy's ${lab.services.kubeProxyMode} picks a pod`,
    },
    { path: "HTTP, ingress", ms: [], note: `GET ${PATH} with Host ${lab.ingress.host} from the outside client to nginx on ${n1.name}:80, then to a pod` },
  ];
  for (let i = 0; i < runs; i++) {
    // One measurement at a time: on two emulated cores, anything beside it would be measured too.
    const same = await iperf({ tools: t1, net: bmSame });
    if (same !== undefined) rows[0].mbps!.push(same);
    const cross = await iperf({ tools: t2, net: t2 });
    if (cross !== undefined) rows[1].mbps!.push(cross);
    rows[2].ms!.push(...(await fromToolbox(`http://${bmSame.ip}:${port}${PATH}`)));
    rows[3].ms!.push(...(await fromToolbox(`http://${bmOther.ip}:${port}${PATH}`)));
    rows[4].ms!.push(...(await fromToolbox(`http://${svc.clusterIP}:${svc.port}${PATH}`)));
    rows[5].ms!.push(...(await fromClient(`http://${n1.address}:80${PATH}`, lab.ingress.host)));
  }
  return {
    lab: lab.name,
    backend: lab.pods.flannel.backend,
    kubeProxyMode: lab.services.kubeProxyMode,
    runs,
    rows,
    startedAt: new Date(started).toISOString(),
    seconds: Math.round((Date.now() - started) / 100) / 10,
  };
}

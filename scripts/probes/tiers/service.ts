// Tier 5, pod -> ClusterIP: KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-* -> DNAT to a pod, with the rule counters read before and after a burst of requests.

import { WORKLOAD_NAMESPACE } from "../../../core/names.ts";
import { shq } from "../../../core/shell.ts";
import { endpointsNow, endpointsOf, readyIPs, serviceOf, toolboxOn } from "../cluster.ts";
import { SERVICE_REQUESTS, TIMEOUT } from "../contract.ts";
import { curlCommand, parseCurl, parseIptablesNat, serviceRules } from "../parse.ts";
import { broken, type ClusterReader, type Tier } from "../types.ts";

/** Counters included: each rule's packet count in the nat table is a count of new connections. */
export const NAT_COUNTERS_COMMAND = "iptables-save -t nat -c";

/**
 * N requests from one curl (a URL range), one connection each: `Connection: close` keeps curl from
 * reusing one, so every request is a new connection the nat rules see. A new curl per request costs a
 * process start each under emulated CPUs. --fail-early stops at the first failure: a dead path costs one timeout.
 */
export const burstCommand = (url: string, n: number) =>
  `curl -s -o /dev/null --connect-timeout 1 -m 2 --fail-early -H 'Connection: close' -w '%{http_code}\\n' ${shq(`${url}?request=[1-${n}]`)}`;

const lookups = (ctx: ClusterReader) => {
  const bm = ctx.lab.workloads.businessManager.name;
  return Promise.all([serviceOf(ctx, WORKLOAD_NAMESPACE, bm), endpointsOf(ctx, WORKLOAD_NAMESPACE, bm), toolboxOn(ctx, ctx.lab.nodes[0].name)]);
};

export const service: Tier = {
  id: "service",
  title: "pod -> Service ClusterIP through kube-proxy's iptables rules, spread over the replicas",
  lookups,
  async run(ctx) {
    const { lab } = ctx;
    const bm = lab.workloads.businessManager;
    const node = lab.nodes[0];
    const [[svc, endpoints, src], before] = await Promise.all([lookups(ctx), ctx.onNode(node.name, NAT_COUNTERS_COMMAND, TIMEOUT.read)]);
    const url = `http://${svc.clusterIP}:${svc.port}/healthz`;
    const name = `${WORKLOAD_NAMESPACE}/${bm.name}`;
    const restartProxy = `kube-proxy on ${node.name} writes these rules: \`systemctl restart kube-proxy\` there; \`journalctl -u kube-proxy\` says why they are missing`;
    ctx.hop(
      `pod (${node.name})`,
      `${src.name} ${src.ip} sends ${SERVICE_REQUESTS} requests to ${svc.clusterIP}:${svc.port} (${name}); ${node.name}'s nat table rewrites them`,
      true,
    );

    const rules = serviceRules(parseIptablesNat(before.stdout), svc.clusterIP, svc.port);
    if (!rules.entry) {
      // The evidence of what that means for a packet: one request, bounded.
      const one = parseCurl(await ctx.inPod(src, curlCommand(url, { discardBody: true, maxTimeSec: 3 }), TIMEOUT.query));
      broken(
        `KUBE-SERVICES (${node.name})`,
        `no rule for ${svc.clusterIP}:${svc.port} (${name}): nothing DNATs the ClusterIP, a request ${one.status ? `got HTTP ${one.status}` : `failed: ${one.error ?? `curl exit ${one.exitCode}`}`}`,
        restartProxy,
      );
    }
    const burst = await ctx.inPod(src, burstCommand(url, SERVICE_REQUESTS), TIMEOUT.burst);
    const after = serviceRules(parseIptablesNat((await ctx.onNode(node.name, NAT_COUNTERS_COMMAND, TIMEOUT.read)).stdout), svc.clusterIP, svc.port);
    const codes = burst.stdout
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
    const okCount = codes.filter((c) => c === "200").length;
    const delta = (chain: string) =>
      (after.endpoints.find((e) => e.chain === chain)?.packets ?? 0) - (rules.endpoints.find((e) => e.chain === chain)?.packets ?? 0);
    const spread = rules.endpoints.map((e) => delta(e.chain));

    ctx.hop(
      `KUBE-SERVICES (${node.name})`,
      `-d ${svc.clusterIP}/32 tcp dpt:${svc.port} -> ${rules.svcChain}: +${(after.entry?.packets ?? 0) - (rules.entry!.packets ?? 0)} connections`,
      true,
    );
    const dnatTargets = rules.endpoints.map((e) => e.dnatTo?.split(":")[0]).sort();
    const current = await endpointsNow(
      ctx,
      WORKLOAD_NAMESPACE,
      bm.name,
      endpoints,
      dnatTargets.filter((ip): ip is string => !!ip),
    );
    const ready = current.filter((e) => e.ready);
    const inSync = JSON.stringify(dnatTargets) === JSON.stringify(readyIPs(current));
    ctx.hop(
      rules.svcChain!,
      `${rules.endpoints.length} endpoints picked at random (${rules.endpoints.map((e) => `p=${e.probability ?? 1}`).join(", ")}), spread ${spread.join("/")}; EndpointSlice: ${ready.length} ready of ${bm.replicas} replicas`,
      ready.length >= bm.replicas && rules.endpoints.length >= bm.replicas && inSync,
      ready.length < bm.replicas
        ? `fewer ready pods than replicas: \`kubectl -n ${WORKLOAD_NAMESPACE} get pods -l app=${bm.name} -o wide\` and describe the one that is not ready`
        : `the rules do not match the EndpointSlice: ${restartProxy}`,
    );
    const complete = codes.length === SERVICE_REQUESTS;
    for (const e of rules.endpoints) {
      const pod = current.find((p) => p.ip === e.dnatTo?.split(":")[0]);
      ctx.hop(
        e.chain,
        `DNAT to ${e.dnatTo}${pod ? ` (${pod.pod} on ${pod.node})` : ""}: +${delta(e.chain)} connections`,
        // 30 requests over 3 equal choices leave a replica without one about once in 60,000 runs.
        // When the burst stopped early, the spread says nothing: the responses hop reports that.
        delta(e.chain) > 0 || !complete,
        `no request went to ${e.dnatTo}: the random choice should reach every replica; ${restartProxy}`,
      );
    }
    ctx.hop(
      `responses`,
      `${okCount}/${SERVICE_REQUESTS} HTTP 200 from GET ${url}${codes.length < SERVICE_REQUESTS ? ` (stopped after ${codes.length}: ${codes[codes.length - 1] ?? "no answer"}${burst.stderr.trim() ? `, ${burst.stderr.trim().split("\n").pop()}` : ""})` : ""}`,
      okCount === SERVICE_REQUESTS,
      `the ClusterIP's rules are there but requests fail: follow the DNAT targets above; the pod-cross-node tier shows whether pod traffic crosses`,
    );
  },
};

// Tier 5, pod -> ClusterIP through kube-proxy's mode (see dataplane.ts): iptables KUBE-SERVICES ->
// KUBE-SVC-* -> KUBE-SEP-*, an IPVS virtual server, or nftables' verdict maps; the spread of a burst of
// requests over the replicas from the table's counters (or conntrack, for nftables).

import { WORKLOAD_NAMESPACE } from "../../../core/names.ts";
import { pause, shq } from "../../../core/shell.ts";
import { type Endpoint, endpointsNow, endpointsOf, readyIPs, serviceOf, toolboxOn } from "../cluster.ts";
import { KUBE_PROXY_CATCH_UP, SERVICE_REQUESTS, TIMEOUT } from "../contract.ts";
import { activeBackends, conntrackSpread, dataplaneOf, type ServicePath } from "../dataplane.ts";
import { curlCommand, parseCurl, parseIptablesNat } from "../parse.ts";
import { broken, type ClusterReader, type Tier } from "../types.ts";

/**
 * N requests from one curl (a URL range), one connection each: `Connection: close` keeps curl from
 * reusing one, so every request is a new connection the nat rules see. A new curl per request costs a
 * process start each under emulated CPUs. --fail-early stops at the first failure: a dead path costs one timeout.
 * Its bounds (1 s to connect, 2 s a request) follow the pace: on a young lab under a slow host the first
 * cross-node connection took longer than 1 s and the burst stopped at it (0/30).
 */
export const burstCommand = (url: string, n: number, pace = 1) =>
  `curl -s -o /dev/null --connect-timeout ${Math.ceil(pace)} -m ${Math.ceil(2 * pace)} --fail-early -H 'Connection: close' -w '%{http_code}\\n' ${shq(`${url}?request=[1-${n}]`)}`;

/** The table's backends that get new connections, by pod IP. */
const activeTargets = (rules: ServicePath) =>
  activeBackends(rules)
    .map((e) => e.to.split(":")[0])
    .sort();
const inSync = (targets: string[], endpoints: Endpoint[]) => targets.join() === readyIPs(endpoints).join();

const lookups = (ctx: ClusterReader) => {
  const bm = ctx.lab.workloads.businessManager.name;
  return Promise.all([serviceOf(ctx, WORKLOAD_NAMESPACE, bm), endpointsOf(ctx, WORKLOAD_NAMESPACE, bm), toolboxOn(ctx, ctx.lab.nodes[0].name)]);
};

export const service: Tier = {
  id: "service",
  title: "pod -> Service ClusterIP through kube-proxy's rules (iptables, IPVS or nftables), spread over the replicas",
  lookups,
  async run(ctx) {
    const { lab } = ctx;
    const dp = dataplaneOf(lab);
    const bm = lab.workloads.businessManager;
    const node = lab.nodes[0];
    const [[svc, endpoints, src], first] = await Promise.all([lookups(ctx), ctx.onNode(node.name, dp.read, TIMEOUT.read)]);
    const url = `http://${svc.clusterIP}:${svc.port}/healthz`;
    const name = `${WORKLOAD_NAMESPACE}/${bm.name}`;
    const entryHop = `${dp.entryNames.service} (${node.name})`;
    const restartProxy = `kube-proxy on ${node.name} writes these rules (\`${dp.look}\` shows them): \`systemctl restart kube-proxy\` there; \`journalctl -u kube-proxy\` says why they are missing`;
    ctx.hop(
      `pod (${node.name})`,
      `${src.name} ${src.ip} sends ${SERVICE_REQUESTS} requests to ${svc.clusterIP}:${svc.port} (${name}); ${node.name}'s ${dp.table} rewrites them`,
      true,
    );

    let before = first;
    let rules = dp.service(before.stdout, svc.clusterIP, svc.port);
    let targets = activeTargets(rules);
    let current = await endpointsNow(ctx, WORKLOAD_NAMESPACE, bm.name, endpoints, targets);
    // kube-proxy writes a change some seconds after the EndpointSlice shows it (under emulation up to
    // ~10 s in IPVS mode): a table behind the EndpointSlice is read again, on the node, for a bounded time.
    let behindSec = 0;
    for (; rules.entry && !inSync(targets, current) && behindSec < KUBE_PROXY_CATCH_UP.withinSec; behindSec += KUBE_PROXY_CATCH_UP.everySec) {
      const again = await ctx.onNode(node.name, `${pause(KUBE_PROXY_CATCH_UP.everySec)}; ${dp.read}`, TIMEOUT.read);
      if (again.exitCode !== 0) break;
      before = again;
      rules = dp.service(before.stdout, svc.clusterIP, svc.port);
      targets = activeTargets(rules);
      current = await endpointsOf({ kubectl: ctx.kubectlAgain }, WORKLOAD_NAMESPACE, bm.name);
    }
    const caughtUp = behindSec > 0 && inSync(targets, current) ? ` (kube-proxy caught up with the EndpointSlice after ${behindSec} s)` : "";
    if (!rules.entry) {
      // The evidence of what that means for a packet: one request, bounded.
      const one = parseCurl(await ctx.inPod(src, curlCommand(url, { discardBody: true, maxTimeSec: 3, pace: await ctx.paceOf(src.node) }), TIMEOUT.query));
      broken(
        entryHop,
        `no rule for ${svc.clusterIP}:${svc.port} (${name}): nothing DNATs the ClusterIP, a request ${one.status ? `got HTTP ${one.status}` : `failed: ${one.error ?? `curl exit ${one.exitCode}`}`}`,
        restartProxy,
      );
    }
    const burst = await ctx.inPod(src, burstCommand(url, SERVICE_REQUESTS, await ctx.paceOf(src.node)), TIMEOUT.burst);
    // The spread: the table's own counters before and after, or (nftables counts nothing) conntrack's entries for the burst.
    const afterRead = await ctx.onNode(
      node.name,
      dp.counts
        ? `${dp.countsLagSec ? `${pause(dp.countsLagSec)}; ` : ""}${dp.read}`
        : `conntrack -L -p tcp --orig-dst ${svc.clusterIP} --orig-port-dst ${svc.port} 2>/dev/null`,
      TIMEOUT.read,
    );
    const after = dp.counts ? dp.service(afterRead.stdout, svc.clusterIP, svc.port) : undefined;
    const tracked = dp.counts ? undefined : conntrackSpread(afterRead.stdout);
    const codes = burst.stdout
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
    const okCount = codes.filter((c) => c === "200").length;
    const delta = (b: ServicePath["backends"][number]) =>
      tracked ? (tracked.get(b.to) ?? 0) : (after!.backends.find((e) => e.name === b.name)?.count ?? 0) - (b.count ?? 0);

    if (dp.mode === "iptables") {
      // The entry rule's own counter: the burst's connections all matched it.
      const entryPackets = (text: string) =>
        parseIptablesNat(text).rules.find((r) => r.chain === "KUBE-SERVICES" && r.dest === svc.clusterIP && r.dport === svc.port)?.packets ?? 0;
      ctx.hop(
        entryHop,
        `-d ${svc.clusterIP}/32 tcp dpt:${svc.port} -> ${rules.name}: +${entryPackets(afterRead.stdout) - entryPackets(before.stdout)} connections`,
        true,
      );
    } else {
      ctx.hop(entryHop, rules.entry!, true);
    }
    const ready = current.filter((e) => e.ready);
    const active = activeBackends(rules);
    const draining = rules.backends.filter((e) => e.draining).map((e) => e.to);
    ctx.hop(
      rules.name!,
      `${active.length} endpoints ${dp.picks}${active.some((e) => e.weight) ? ` (${active.map((e) => e.weight).join(", ")})` : ""}, spread ${active.map(delta).join("/")}${draining.length ? `; draining (weight 0, no new connections): ${draining.join(", ")}` : ""}; EndpointSlice: ${ready.length} ready of ${bm.replicas} replicas${caughtUp}`,
      ready.length >= bm.replicas && active.length >= bm.replicas && inSync(targets, current),
      ready.length < bm.replicas
        ? `fewer ready pods than replicas: \`kubectl -n ${WORKLOAD_NAMESPACE} get pods -l app=${bm.name} -o wide\` and describe the one that is not ready`
        : `the rules do not match the EndpointSlice${behindSec ? ` (${behindSec} s after it)` : ""}: ${restartProxy}`,
    );
    const complete = codes.length === SERVICE_REQUESTS;
    for (const e of active) {
      const pod = current.find((p) => p.ip === e.to.split(":")[0]);
      ctx.hop(
        e.name,
        `DNAT to ${e.to}${pod ? ` (${pod.pod} on ${pod.node})` : ""}: +${delta(e)} connections`,
        // 30 requests over 3 equal choices leave a replica without one about once in 60,000 runs.
        // When the burst stopped early, the spread says nothing: the responses hop reports that.
        delta(e) > 0 || !complete,
        `no request went to ${e.to}: every replica should get some; ${restartProxy}`,
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

// Tier 6, DNS: from a pod, the cluster DNS Service answers for a Service, a headless Service and a name that exists nowhere.

import { CLUSTER_DNS, headlessService, WORKLOAD_NAMESPACE } from "../../../core/names.ts";
import { endpointsNow, endpointsOf, readyIPs, serviceOf, toolboxOn } from "../cluster.ts";
import { DNS_MISS_NAME, TIMEOUT } from "../contract.ts";
import { type DigResult, digCommand, parseDig, parseResolvConf } from "../parse.ts";
import type { ClusterReader, Tier } from "../types.ts";

const lookups = (ctx: ClusterReader) => {
  const { lab } = ctx;
  return Promise.all([
    toolboxOn(ctx, lab.nodes[0].name),
    serviceOf(ctx, CLUSTER_DNS.namespace, CLUSTER_DNS.service),
    endpointsOf(ctx, CLUSTER_DNS.namespace, CLUSTER_DNS.service),
    serviceOf(ctx, WORKLOAD_NAMESPACE, lab.workloads.businessManager.name),
    endpointsOf(ctx, WORKLOAD_NAMESPACE, headlessService(lab.workloads.dataProduct.name)),
  ]);
};

const answered = (d: DigResult) => (d.status ? `${d.status}${d.queryMs !== undefined ? ` in ${d.queryMs} ms` : ""}` : (d.error ?? "no answer"));

export const dns: Tier = {
  id: "dns",
  title: "names resolve through the cluster DNS Service, from a pod",
  lookups,
  async run(ctx) {
    const { lab } = ctx;
    const { dnsIP, clusterDomain } = lab.services;
    const bm = lab.workloads.businessManager.name;
    const headless = headlessService(lab.workloads.dataProduct.name);
    const fqdn = (svc: string) => `${svc}.${WORKLOAD_NAMESPACE}.svc.${clusterDomain}`;
    const [src, dnsSvc, dnsEndpoints, bmSvc, headlessEndpoints] = await lookups(ctx);
    // One shell in the pod: each dig is bounded by its own +time (2 s at the reference pace; CoreDNS on a busy
    // emulated CPU answers slower), so the three together stay under the query timeout, which follows the same pace.
    const t = Math.ceil(2 * (await ctx.paceOf(src.node)));
    const [resolv, svcAnswer, headlessAnswer, miss] = await ctx.inPodSteps(
      src,
      ["cat /etc/resolv.conf", digCommand(dnsIP, fqdn(bm), "A", t), digCommand(dnsIP, fqdn(headless), "A", t), digCommand(dnsIP, `${DNS_MISS_NAME}.`, "A", t)],
      TIMEOUT.query,
    );

    const conf = parseResolvConf(resolv.stdout);
    ctx.hop(
      `${src.name} resolv.conf`,
      `nameserver ${conf.nameservers.join(", ") || "(none)"}; search ${conf.search.join(" ") || "(none)"}`,
      conf.nameservers[0] === dnsIP,
      `kubelet writes the pod's resolv.conf from its clusterDNS (${dnsIP}): check /etc/kubernetes/config/kubelet.yaml on ${src.node}, then recreate the pod`,
    );
    const ready = dnsEndpoints.filter((e) => e.ready);
    ctx.hop(
      `Service ${CLUSTER_DNS.namespace}/${CLUSTER_DNS.service}`,
      `${dnsSvc.clusterIP}:${dnsSvc.port} -> ${ready.length ? ready.map((e) => `${e.pod || e.ip} ${e.ip} on ${e.node}`).join(", ") : "no ready CoreDNS endpoint"}`,
      dnsSvc.clusterIP === dnsIP && ready.length > 0,
      dnsSvc.clusterIP !== dnsIP
        ? `the kube-dns Service must have ClusterIP ${dnsIP} (what kubelet tells every pod); recreate it with that address`
        : `CoreDNS has no ready pod: \`kubectl -n ${CLUSTER_DNS.namespace} get deploy,pods -l ${CLUSTER_DNS.selector}\`; scale it up (\`kubectl -n ${CLUSTER_DNS.namespace} scale deployment coredns --replicas=2\`) or read its logs`,
    );
    const svcDig = parseDig(svcAnswer.stdout);
    const svcIPs = svcDig.answers.filter((a) => a.type === "A").map((a) => a.data);
    ctx.hop(
      `A ${fqdn(bm)}`,
      `${svcIPs.join(", ") || "no A record"} (${answered(svcDig)}); the Service's ClusterIP is ${bmSvc.clusterIP}`,
      svcDig.status === "NOERROR" && svcIPs.includes(bmSvc.clusterIP),
      `CoreDNS does not answer with the ClusterIP: its kubernetes plugin watches Services (\`kubectl -n ${CLUSTER_DNS.namespace} logs -l ${CLUSTER_DNS.selector}\`)`,
    );
    const headlessDig = parseDig(headlessAnswer.stdout);
    const podIPs = headlessDig.answers
      .filter((a) => a.type === "A")
      .map((a) => a.data)
      .sort();
    const expected = readyIPs(await endpointsNow(ctx, WORKLOAD_NAMESPACE, headless, headlessEndpoints, podIPs));
    ctx.hop(
      `A ${fqdn(headless)}`,
      `${podIPs.join(", ") || "no A record"} (${answered(headlessDig)}); ready pods: ${expected.join(", ") || "none"}`,
      headlessDig.status === "NOERROR" && podIPs.length > 0 && podIPs.join() === expected.join(),
      `a headless Service answers with its ready pods' IPs: compare \`kubectl -n ${WORKLOAD_NAMESPACE} get endpointslices -l kubernetes.io/service-name=${headless}\` with CoreDNS's logs`,
    );
    const missDig = parseDig(miss.stdout);
    ctx.hop(
      `miss ${DNS_MISS_NAME}`,
      `${answered(missDig)}${missDig.answers.length ? `, but answers ${missDig.answers.map((a) => a.data).join(", ")}` : ""}`,
      ["NXDOMAIN", "SERVFAIL", "REFUSED"].includes(missDig.status ?? "") && missDig.answers.length === 0,
      `a name that exists nowhere must get a prompt negative answer, not a timeout or an address: check CoreDNS's forward settings`,
    );
  },
};

// Tier 8, ingress: the outside client asks nginx on a node's port 80 with the lab's Host header, and business-manager answers.

import type { Lab } from "../../../core/index.ts";
import { appSelector, INGRESS_CONTROLLER, WORKLOAD_NAMESPACE } from "../../../core/names.ts";
import { isServing, podsOf } from "../cluster.ts";
import { BUSINESS_READY_PATH, TIMEOUT } from "../contract.ts";
import { type CurlResult, curlCommand, curlFailure, parseBusinessAnswer, parseCurl } from "../parse.ts";
import type { ClusterReader, Tier } from "../types.ts";

/** What to do when nginx answers, but not with business-manager. */
export function upstreamFix(lab: Lab, r: CurlResult): string {
  if (r.status === 404)
    return `nginx has no rule for Host ${lab.ingress.host}: \`kubectl get ingress -A\` (class ${lab.ingress.className}, backend ${lab.ingress.service})`;
  if (r.status >= 500)
    return `nginx has no ready upstream: \`kubectl -n ${WORKLOAD_NAMESPACE} get endpointslices -l kubernetes.io/service-name=${lab.ingress.service}\` and the controller's logs`;
  return `unexpected answer: see the evidence`;
}

const lookups = (ctx: ClusterReader) =>
  Promise.all([podsOf(ctx, INGRESS_CONTROLLER.namespace), podsOf(ctx, WORKLOAD_NAMESPACE, appSelector(ctx.lab.ingress.service))]);

export const ingress: Tier = {
  id: "ingress",
  title: "outside client -> nginx on a node's port 80, with the lab's Host -> business-manager",
  lookups,
  async run(ctx) {
    const { lab } = ctx;
    const { host, service } = lab.ingress;
    const [controllers, backends] = await lookups(ctx);
    // hostNetwork: a controller listens on its node's own address. With none running, every node is asked, for the evidence.
    const running = controllers.filter(isServing);
    const targets = running.length ? lab.nodes.filter((n) => running.some((p) => p.node === n.name)) : lab.nodes;
    const pace = await ctx.paceOf();
    const answers = await Promise.all(
      targets.map(async (node) => ({
        node,
        r: parseCurl(
          await ctx.fromOutsideClient(curlCommand(`http://${node.address}:${INGRESS_CONTROLLER.port}${BUSINESS_READY_PATH}`, { host, pace }), TIMEOUT.query),
        ),
      })),
    );
    for (const { node, r } of answers) {
      const controller = controllers.find((p) => p.node === node.name);
      ctx.hop(
        `${lab.lan.gateway} -> ${node.name}:${INGRESS_CONTROLLER.port}`,
        r.status
          ? `nginx (${controller?.name ?? "?"}, hostNetwork) answered HTTP ${r.status} for Host ${host}`
          : `${curlFailure(r)}; ${controller ? `${controller.name} is ${controller.phase}${controller.ready ? "" : ", not ready"}` : `no ingress controller pod in ${INGRESS_CONTROLLER.namespace}`}`,
        r.status !== 0,
        `nothing listens on ${node.address}:${INGRESS_CONTROLLER.port}: start the ingress controller (hostNetwork, port ${INGRESS_CONTROLLER.port}): \`kubectl -n ${INGRESS_CONTROLLER.namespace} get deploy,ds,pods -o wide\`, then its logs`,
      );
      if (!r.status) continue;
      const served = parseBusinessAnswer(r.body)?.businessManager;
      const known = backends.some((p) => p.name === served?.pod);
      ctx.hop(
        `nginx -> ${service}`,
        served
          ? `${served.pod} ${served.ip} on ${served.node} answered ${BUSINESS_READY_PATH}${known ? "" : ` (not a pod of ${service})`}`
          : `HTTP ${r.status}: ${r.body.split("\n")[0].slice(0, 120)}`,
        r.status === 200 && known,
        upstreamFix(lab, r),
      );
    }
  },
};

// Tier 9, the business flow: outside client -> ingress -> business-manager (HTTP) -> data-product (gRPC), end to end.

import { appSelector, INGRESS_CONTROLLER, WORKLOAD_NAMESPACE } from "../../../core/names.ts";
import { describePod, isServing, type Pod, podsOf } from "../cluster.ts";
import { TIMEOUT } from "../contract.ts";
import { curlCommand, curlFailure, parseBusinessAnswer, parseCurl } from "../parse.ts";
import { broken, type ClusterReader, type Tier } from "../types.ts";
import { upstreamFix } from "./ingress.ts";

const REQUESTS = 3;

const lookups = (ctx: ClusterReader) => {
  const { dataProduct: dp, businessManager: bm } = ctx.lab.workloads;
  return Promise.all([
    podsOf(ctx, INGRESS_CONTROLLER.namespace),
    podsOf(ctx, WORKLOAD_NAMESPACE, appSelector(bm.name)),
    podsOf(ctx, WORKLOAD_NAMESPACE, appSelector(dp.name)),
  ]);
};

export const businessFlow: Tier = {
  id: "business-flow",
  title: "outside client -> ingress -> business-manager -> data-product over gRPC",
  lookups,
  async run(ctx) {
    const { lab } = ctx;
    const { dataProduct: dp, businessManager: bm } = lab.workloads;
    const [controllers, bmPods, dpPods] = await lookups(ctx);
    const node = lab.nodes.find((n) => controllers.some((p) => p.node === n.name && isServing(p)));
    if (!node) broken("ingress controller", `no ready pod in ${INGRESS_CONTROLLER.namespace}`, "see the ingress tier");
    const url = `http://${node.address}:${INGRESS_CONTROLLER.port}/`;
    // curl outlasts business-manager's 5 s gRPC deadline: a slow data-product shows as its 502 naming the hop.
    const pace = await ctx.paceOf();
    const answers = (
      await Promise.all(
        Array.from({ length: REQUESTS }, () => ctx.fromOutsideClient(curlCommand(url, { host: lab.ingress.host, maxTimeSec: 10, pace }), TIMEOUT.query)),
      )
    ).map(parseCurl);
    const bodies = answers.map((r) => parseBusinessAnswer(r.body));
    const podOf = (pods: Pod[], name?: string) => pods.find((p) => p.name === name);
    const listed = <T>(items: T[]) => [...new Set(items)].join(", ");

    ctx.hop(
      `${lab.lan.gateway} -> nginx ${node.name}:${INGRESS_CONTROLLER.port}`,
      `GET ${url} with Host ${lab.ingress.host}: ${listed(answers.map((r) => (r.status ? `HTTP ${r.status}` : curlFailure(r))))}`,
      answers.every((r) => r.status !== 0),
      "see the ingress tier",
    );
    const managers = bodies.map((b) => podOf(bmPods, b?.businessManager?.pod));
    ctx.hop(
      `nginx -> ${bm.name}`,
      managers.every(Boolean)
        ? `served by ${listed(managers.map((p) => describePod(p!)))}`
        : `not answered by a ${bm.name} pod: ${answers.map((r) => r.body.split("\n")[0].slice(0, 80)).join(" | ")}`,
      managers.every(Boolean),
      upstreamFix(lab, answers.find((r) => r.status !== 200) ?? answers[0]),
    );
    const failed = bodies.find((b) => b?.grpc);
    const products = bodies.map((b) => (b?.dataProduct && "pod" in b.dataProduct ? podOf(dpPods, b.dataProduct.pod) : undefined));
    const product = bodies.find((b) => b?.product)?.product;
    ctx.hop(
      `${bm.name} -> ${dp.name} (gRPC ${dp.name}:${dp.port})`,
      failed
        ? `HTTP 502: gRPC ${failed.grpc!.status}: ${failed.grpc!.message} (target ${failed.target})`
        : products.every(Boolean)
          ? `served by ${listed(products.map((p) => describePod(p!)))}; product ${product?.id} "${product?.name}"; ${bodies.map((b) => `${b?.latencyMs} ms`).join(", ")}`
          : `no answer names a ${dp.name} pod`,
      answers.every((r) => r.status === 200) && products.every(Boolean),
      `business-manager cannot get an answer from ${dp.name}:${dp.port}: \`kubectl -n ${WORKLOAD_NAMESPACE} get pods,endpointslices -l app=${dp.name}\`; the DNS tier shows whether ${dp.name} resolves`,
    );
  },
};

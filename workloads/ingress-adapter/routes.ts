// Which requests the adapter translates, and where it sends them. Pure: method and URL in, route out.

/** What the adapter does with one request. */
export type Route =
  /** A v1beta1 Ingress or IngressClass request: sent to the same place under v1, the answer converted back. */
  | { kind: "translate"; upstreamPath: string; resource: "ingresses" | "ingressclasses"; watch: boolean }
  /** GET /apis/networking.k8s.io/v1beta1: made from the v1 resource list. */
  | { kind: "resource-list" }
  /** GET /apis or /apis/networking.k8s.io: the API server's answer, with v1beta1 among networking's versions. */
  | { kind: "group-discovery" }
  /** Everything else: sent as it is, answered as it comes. */
  | { kind: "pass" };

const V1BETA1_PREFIX = "/apis/networking.k8s.io/v1beta1";
const V1_PREFIX = "/apis/networking.k8s.io/v1";

// /apis/networking.k8s.io/v1beta1[/watch][/namespaces/NS]/ingresses[/NAME[/status]] and
// /apis/networking.k8s.io/v1beta1[/watch]/ingressclasses[/NAME] (cluster-scoped).
const INGRESSES = /^\/apis\/networking\.k8s\.io\/v1beta1(\/watch)?(?:\/namespaces\/[^/]+)?\/ingresses(?:\/[^/]+(?:\/status)?)?\/?$/;
const INGRESS_CLASSES = /^\/apis\/networking\.k8s\.io\/v1beta1(\/watch)?\/ingressclasses(?:\/[^/]+)?\/?$/;

export function routeFor(method: string, pathname: string, query: URLSearchParams): Route {
  for (const [pattern, resource] of [
    [INGRESSES, "ingresses"],
    [INGRESS_CLASSES, "ingressclasses"],
  ] as const) {
    const match = pattern.exec(pathname);
    if (match) {
      const watch = match[1] !== undefined || isWatchParam(query.get("watch"));
      return { kind: "translate", upstreamPath: V1_PREFIX + pathname.slice(V1BETA1_PREFIX.length), resource, watch };
    }
  }
  if (method === "GET" && (pathname === V1BETA1_PREFIX || pathname === `${V1BETA1_PREFIX}/`)) return { kind: "resource-list" };
  if (method === "GET" && ["/apis", "/apis/", "/apis/networking.k8s.io", "/apis/networking.k8s.io/"].includes(pathname)) return { kind: "group-discovery" };
  return { kind: "pass" };
}

/** The API server's reading of ?watch=: absent, "0" and "false" (any case) are false; anything else, "" included, is true. */
export function isWatchParam(value: string | null): boolean {
  return value !== null && value !== "0" && value.toLowerCase() !== "false";
}

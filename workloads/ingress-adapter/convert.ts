// Converts Ingress and IngressClass between networking.k8s.io/v1 (served by Kubernetes 1.34) and v1beta1 (spoken by controller v1.12.5).
// The field mapping follows the API server's own conversion before 1.22 (k8s.io/kubernetes pkg/apis/networking/v1beta1/conversion.go).
// Every function is pure: it returns a converted copy and leaves its argument alone.

export const V1 = "networking.k8s.io/v1";
export const V1BETA1 = "networking.k8s.io/v1beta1";

/** A Kubernetes object as JSON: only apiVersion and kind are looked at before knowing what it is. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  [field: string]: unknown;
}

/** v1 IngressBackend: a Service by name and port (number or name), or a typed resource reference. */
export interface V1Backend {
  service?: { name?: string; port?: { number?: number; name?: string } };
  resource?: unknown;
}

/** v1beta1 IngressBackend: servicePort is an IntOrString, so a number or a port name. */
export interface V1beta1Backend {
  serviceName?: string;
  servicePort?: number | string;
  resource?: unknown;
}

/** A watch event as the API server streams it: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR with its object. */
export interface WatchEvent {
  type: string;
  object: unknown;
}

type ObjectConverter = (object: KubeObject, listed: boolean) => KubeObject;

const toV1beta1ByKind: Record<string, ObjectConverter> = {
  Ingress: (o, listed) => ({ ...renameIn(o, V1, V1BETA1, listed), ...(o.spec ? { spec: specToV1beta1(o.spec as Spec) } : {}) }),
  IngressClass: (o, listed) => renameIn(o, V1, V1BETA1, listed),
};

const toV1ByKind: Record<string, ObjectConverter> = {
  Ingress: (o, listed) => ({ ...renameIn(o, V1BETA1, V1, listed), ...(o.spec ? { spec: specToV1(o.spec as Spec) } : {}) }),
  IngressClass: (o, listed) => renameIn(o, V1BETA1, V1, listed),
};

/**
 * A v1 Ingress, IngressClass, or a list of either, as v1beta1. Anything else (a Status, a
 * BOOKMARK's bare object of another kind, an object of another group) comes back unchanged.
 */
export function toV1beta1<T>(object: T): T {
  return convert(object, V1, toV1beta1ByKind);
}

/** A v1beta1 Ingress, IngressClass, or a list of either, as v1; anything else unchanged. */
export function toV1<T>(object: T): T {
  return convert(object, V1BETA1, toV1ByKind);
}

/** A watch event from a v1 watch, with its object as v1beta1 (BOOKMARKs included: the client checks their kind too). */
export function watchEventToV1beta1(event: WatchEvent): WatchEvent {
  return { ...event, object: toV1beta1(event.object) };
}

function convert<T>(object: T, from: string, byKind: Record<string, ObjectConverter>): T {
  if (!isObject(object) || object.apiVersion !== from || typeof object.kind !== "string") return object;
  const single = byKind[object.kind];
  if (single) return single(object, false) as T;
  const item = object.kind.endsWith("List") ? byKind[object.kind.slice(0, -"List".length)] : undefined;
  if (item && Array.isArray(object.items)) {
    // Items in a list carry no apiVersion or kind of their own (Go leaves the empty TypeMeta out).
    return { ...object, apiVersion: from === V1 ? V1BETA1 : V1, items: object.items.map((i) => (isObject(i) ? item(i, true) : i)) } as T;
  }
  return object;
}

/** The object with apiVersion `from` replaced by `to`; a list item without apiVersion stays without. */
function renameIn(object: KubeObject, from: string, to: string, listed: boolean): KubeObject {
  if (listed && object.apiVersion === undefined) return { ...object };
  return { ...object, apiVersion: object.apiVersion === from ? to : object.apiVersion };
}

interface Spec {
  defaultBackend?: V1Backend;
  backend?: V1beta1Backend;
  rules?: Array<{ http?: { paths?: Array<{ backend?: unknown }> } }>;
  [field: string]: unknown;
}

function specToV1beta1(spec: Spec): Spec {
  const out = renameKey(spec, "defaultBackend", "backend", (b) => backendToV1beta1(b as V1Backend));
  return withPathBackends(out, (b) => backendToV1beta1(b as V1Backend));
}

function specToV1(spec: Spec): Spec {
  const out = renameKey(spec, "backend", "defaultBackend", (b) => backendToV1(b as V1beta1Backend));
  return withPathBackends(out, (b) => backendToV1(b as V1beta1Backend));
}

/** rules[].http.paths[].backend mapped; host, path, pathType and everything else as they are. */
function withPathBackends(spec: Spec, mapBackend: (backend: unknown) => unknown): Spec {
  if (!Array.isArray(spec.rules)) return spec;
  const rules = spec.rules.map((rule) => {
    if (!isObject(rule) || !isObject(rule.http) || !Array.isArray(rule.http.paths)) return rule;
    const paths = rule.http.paths.map((p) => (isObject(p) && isObject(p.backend) ? { ...p, backend: mapBackend(p.backend) } : p));
    return { ...rule, http: { ...rule.http, paths } };
  });
  return { ...spec, rules };
}

/** v1 -> v1beta1: service.name -> serviceName; port.name (when set) or port.number -> servicePort; resource as it is. */
export function backendToV1beta1(backend: V1Backend): V1beta1Backend {
  const { service, ...rest } = backend;
  if (!service) return rest;
  const port = service.port ?? {};
  const servicePort = port.name ? port.name : (port.number ?? 0);
  return { serviceName: service.name ?? "", servicePort, ...rest };
}

/** v1beta1 -> v1: a string servicePort is a port name, a number a port number (as intstr's type says). */
export function backendToV1(backend: V1beta1Backend): V1Backend {
  const { serviceName, servicePort, ...rest } = backend;
  if (serviceName === undefined && servicePort === undefined) return rest;
  const port = typeof servicePort === "string" ? { name: servicePort } : { number: servicePort ?? 0 };
  return { service: { name: serviceName ?? "", port }, ...rest };
}

/** The object with key `from` renamed to `to` in the same place, its value mapped; unchanged when `from` is absent. */
function renameKey<T extends object>(object: T, from: string, to: string, mapValue: (value: unknown) => unknown): T {
  if (!(from in object)) return object;
  return Object.fromEntries(Object.entries(object).map(([k, v]) => (k === from ? [to, mapValue(v)] : [k, v]))) as T;
}

function isObject(value: unknown): value is KubeObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// Discovery. The controller itself asks only /version (k8s.GetK8sVersion); typed clientsets do no
// discovery. These answers are for anything else on the same loopback port, e.g. kubectl.

/** The resources v1beta1 serves through the adapter, taken from the API server's v1 APIResourceList. */
export const V1BETA1_RESOURCES = ["ingresses", "ingresses/status", "ingressclasses"];

/** GET /apis/networking.k8s.io/v1beta1: the v1 list of resources, cut to Ingress and IngressClass, under the v1beta1 name. */
export function v1beta1ResourceList(v1List: unknown): unknown {
  if (!isObject(v1List) || v1List.kind !== "APIResourceList" || v1List.groupVersion !== V1 || !Array.isArray(v1List.resources)) return v1List;
  const resources = v1List.resources.filter((r) => isObject(r) && V1BETA1_RESOURCES.includes(r.name as string));
  return { ...v1List, groupVersion: V1BETA1, resources };
}

/**
 * GET /apis (an APIGroupList) or /apis/networking.k8s.io (an APIGroup) in the legacy discovery
 * format: networking.k8s.io lists v1beta1 as well, after v1; v1 stays the preferred version.
 */
export function withV1beta1Served(discovery: unknown): unknown {
  if (!isObject(discovery)) return discovery;
  if (discovery.kind === "APIGroup") return addV1beta1(discovery);
  if (discovery.kind === "APIGroupList" && Array.isArray(discovery.groups)) {
    return { ...discovery, groups: discovery.groups.map((g) => (isObject(g) ? addV1beta1(g) : g)) };
  }
  return discovery;
}

function addV1beta1(group: KubeObject): KubeObject {
  if (group.name !== "networking.k8s.io" || !Array.isArray(group.versions)) return group;
  if (group.versions.some((v) => isObject(v) && v.groupVersion === V1BETA1)) return group;
  return { ...group, versions: [...group.versions, { groupVersion: V1BETA1, version: "v1beta1" }] };
}

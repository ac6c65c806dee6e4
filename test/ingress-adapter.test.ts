// The ingress API adapter: v1 <-> v1beta1 conversion on its own, then the server between a client and a fake API server on 127.0.0.1.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { createCa, issueCertificate, type KeyPairPem } from "../scripts/pki/generate.ts";
import {
  backendToV1,
  backendToV1beta1,
  toV1,
  toV1beta1,
  v1beta1ResourceList,
  watchEventToV1beta1,
  withV1beta1Served,
} from "../workloads/ingress-adapter/convert.ts";
import { JsonObjectSplitter } from "../workloads/ingress-adapter/json-stream.ts";
import { isWatchParam, routeFor } from "../workloads/ingress-adapter/routes.ts";
import { type IngressAdapterArgs, type RunningIngressAdapter, startIngressAdapter } from "../workloads/ingress-adapter/server.ts";
import { ServiceAccountToken, upstreamFromEnv } from "../workloads/ingress-adapter/upstream.ts";

// ---- Objects as the 1.34 API server returns them, and what the v1.12.5 controller must see ----

const metadata = (name: string, resourceVersion: string) => ({
  name,
  namespace: "default",
  uid: `0b8e6a52-1c1e-4c39-9a5e-${resourceVersion.padStart(12, "0")}`,
  resourceVersion,
  generation: 1,
  creationTimestamp: "2026-11-22T03:40:00Z",
  annotations: { "nginx.org/proxy-read-timeout": "30s" },
});

/** The lab's Ingress: k8s.test.com -> business-manager:80. */
const labIngressV1 = {
  apiVersion: "networking.k8s.io/v1",
  kind: "Ingress",
  metadata: metadata("business-manager", "48213"),
  spec: {
    ingressClassName: "nginx",
    rules: [
      { host: "k8s.test.com", http: { paths: [{ path: "/", pathType: "Prefix", backend: { service: { name: "business-manager", port: { number: 80 } } } }] } },
    ],
  },
  status: { loadBalancer: {} },
};
const labIngressV1beta1 = {
  apiVersion: "networking.k8s.io/v1beta1",
  kind: "Ingress",
  metadata: metadata("business-manager", "48213"),
  spec: {
    ingressClassName: "nginx",
    rules: [{ host: "k8s.test.com", http: { paths: [{ path: "/", pathType: "Prefix", backend: { serviceName: "business-manager", servicePort: 80 } }] } }],
  },
  status: { loadBalancer: {} },
};

/** A named Service port, and TLS. */
const namedPortIngressV1 = {
  apiVersion: "networking.k8s.io/v1",
  kind: "Ingress",
  metadata: metadata("business-manager-tls", "48214"),
  spec: {
    ingressClassName: "nginx",
    tls: [{ hosts: ["k8s.test.com"], secretName: "k8s-test-com-tls" }],
    rules: [
      {
        host: "k8s.test.com",
        http: {
          paths: [
            { path: "/products", pathType: "Prefix", backend: { service: { name: "business-manager", port: { name: "http" } } } },
            { path: "/healthz", pathType: "Exact", backend: { service: { name: "business-manager", port: { number: 8080 } } } },
          ],
        },
      },
    ],
  },
  status: { loadBalancer: { ingress: [{ ip: "10.240.0.11" }] } },
};
const namedPortIngressV1beta1 = {
  apiVersion: "networking.k8s.io/v1beta1",
  kind: "Ingress",
  metadata: metadata("business-manager-tls", "48214"),
  spec: {
    ingressClassName: "nginx",
    tls: [{ hosts: ["k8s.test.com"], secretName: "k8s-test-com-tls" }],
    rules: [
      {
        host: "k8s.test.com",
        http: {
          paths: [
            { path: "/products", pathType: "Prefix", backend: { serviceName: "business-manager", servicePort: "http" } },
            { path: "/healthz", pathType: "Exact", backend: { serviceName: "business-manager", servicePort: 8080 } },
          ],
        },
      },
    ],
  },
  status: { loadBalancer: { ingress: [{ ip: "10.240.0.11" }] } },
};

/** A default backend, a rule without http, and a resource backend. */
const defaultBackendIngressV1 = {
  apiVersion: "networking.k8s.io/v1",
  kind: "Ingress",
  metadata: metadata("fallback", "48215"),
  spec: {
    ingressClassName: "nginx",
    defaultBackend: { service: { name: "business-manager", port: { number: 80 } } },
    rules: [
      {
        host: "static.k8s.test.com",
        http: {
          paths: [
            {
              path: "/assets",
              pathType: "ImplementationSpecific",
              backend: { resource: { apiGroup: "k8s.example.com", kind: "StorageBucket", name: "static-assets" } },
            },
          ],
        },
      },
      { host: "bare.k8s.test.com" },
    ],
  },
  status: { loadBalancer: {} },
};
const defaultBackendIngressV1beta1 = {
  apiVersion: "networking.k8s.io/v1beta1",
  kind: "Ingress",
  metadata: metadata("fallback", "48215"),
  spec: {
    ingressClassName: "nginx",
    backend: { serviceName: "business-manager", servicePort: 80 },
    rules: [
      {
        host: "static.k8s.test.com",
        http: {
          paths: [
            {
              path: "/assets",
              pathType: "ImplementationSpecific",
              backend: { resource: { apiGroup: "k8s.example.com", kind: "StorageBucket", name: "static-assets" } },
            },
          ],
        },
      },
      { host: "bare.k8s.test.com" },
    ],
  },
  status: { loadBalancer: {} },
};

const ingressClassV1 = {
  apiVersion: "networking.k8s.io/v1",
  kind: "IngressClass",
  metadata: { name: "nginx", uid: "5d1f8e0c-7a0e-4a36-8f7e-3b1c9c4e2a10", resourceVersion: "47001", generation: 1, creationTimestamp: "2026-11-22T03:39:00Z" },
  spec: { controller: "nginx.org/ingress-controller" },
};
const ingressClassV1beta1 = { ...ingressClassV1, apiVersion: "networking.k8s.io/v1beta1" };

/** Items in a list have no apiVersion or kind of their own. */
const bare = ({ apiVersion, kind, ...rest }: { apiVersion: string; kind: string; [k: string]: unknown }) => rest;
const ingressListV1 = {
  kind: "IngressList",
  apiVersion: "networking.k8s.io/v1",
  metadata: { resourceVersion: "48220" },
  items: [labIngressV1, namedPortIngressV1, defaultBackendIngressV1].map(bare),
};
const ingressListV1beta1 = {
  kind: "IngressList",
  apiVersion: "networking.k8s.io/v1beta1",
  metadata: { resourceVersion: "48220" },
  items: [labIngressV1beta1, namedPortIngressV1beta1, defaultBackendIngressV1beta1].map(bare),
};

const goneStatus = {
  kind: "Status",
  apiVersion: "v1",
  metadata: {},
  status: "Failure",
  message: "too old resource version: 1 (48000)",
  reason: "Expired",
  code: 410,
};

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
for (const fixture of [labIngressV1, namedPortIngressV1, defaultBackendIngressV1, ingressClassV1, ingressListV1, goneStatus]) deepFreeze(fixture);

describe("conversion", () => {
  test("an Ingress to business-manager:80 becomes serviceName/servicePort", () => {
    assert.deepEqual(toV1beta1(labIngressV1), labIngressV1beta1);
  });

  test("a named port stays a name (an IntOrString string); TLS, pathType and status are kept", () => {
    assert.deepEqual(toV1beta1(namedPortIngressV1), namedPortIngressV1beta1);
  });

  test("defaultBackend becomes backend; a resource backend and a rule without http are kept", () => {
    assert.deepEqual(toV1beta1(defaultBackendIngressV1), defaultBackendIngressV1beta1);
    assert.deepEqual(Object.keys(toV1beta1(defaultBackendIngressV1).spec), ["ingressClassName", "backend", "rules"], "the renamed field keeps its place");
  });

  test("an IngressClass changes only its apiVersion", () => {
    assert.deepEqual(toV1beta1(ingressClassV1), ingressClassV1beta1);
  });

  test("a list converts every item and keeps items without apiVersion", () => {
    assert.deepEqual(toV1beta1(ingressListV1), ingressListV1beta1);
    assert.deepEqual(toV1beta1({ kind: "IngressClassList", apiVersion: "networking.k8s.io/v1", metadata: {}, items: [bare(ingressClassV1)] }), {
      kind: "IngressClassList",
      apiVersion: "networking.k8s.io/v1beta1",
      metadata: {},
      items: [bare(ingressClassV1)],
    });
  });

  test("watch events: the object converts, BOOKMARKs too; an ERROR Status is left alone", () => {
    assert.deepEqual(watchEventToV1beta1({ type: "ADDED", object: labIngressV1 }), { type: "ADDED", object: labIngressV1beta1 });
    const bookmark = {
      type: "BOOKMARK",
      object: {
        kind: "Ingress",
        apiVersion: "networking.k8s.io/v1",
        metadata: { resourceVersion: "48230", annotations: { "k8s.io/initial-events-end": "true" } },
      },
    };
    assert.deepEqual(watchEventToV1beta1(bookmark), { type: "BOOKMARK", object: { ...bookmark.object, apiVersion: "networking.k8s.io/v1beta1" } });
    assert.equal(watchEventToV1beta1({ type: "ERROR", object: goneStatus }).object, goneStatus);
  });

  test("v1beta1 -> v1 is the inverse, for every fixture", () => {
    assert.deepEqual(toV1(labIngressV1beta1), labIngressV1);
    assert.deepEqual(toV1(namedPortIngressV1beta1), namedPortIngressV1);
    assert.deepEqual(toV1(defaultBackendIngressV1beta1), defaultBackendIngressV1);
    assert.deepEqual(toV1(ingressClassV1beta1), ingressClassV1);
    assert.deepEqual(toV1(ingressListV1beta1), ingressListV1);
  });

  test("backends one by one, as the API server's conversion did", () => {
    assert.deepEqual(backendToV1beta1({ service: { name: "a", port: { number: 80 } } }), { serviceName: "a", servicePort: 80 });
    assert.deepEqual(backendToV1beta1({ service: { name: "a", port: { name: "http" } } }), { serviceName: "a", servicePort: "http" });
    assert.deepEqual(backendToV1beta1({ resource: { kind: "Bucket", name: "b" } }), { resource: { kind: "Bucket", name: "b" } });
    assert.deepEqual(backendToV1({ serviceName: "a", servicePort: 80 }), { service: { name: "a", port: { number: 80 } } });
    // A string servicePort is a name, even when it looks like a number: intstr keeps the JSON type.
    assert.deepEqual(backendToV1({ serviceName: "a", servicePort: "80" }), { service: { name: "a", port: { name: "80" } } });
  });

  test("anything else is returned as it is: Status, core objects, other versions", () => {
    for (const other of [goneStatus, { apiVersion: "v1", kind: "Service", spec: { backend: 1 } }, labIngressV1beta1, "text", null, [labIngressV1]]) {
      assert.equal(toV1beta1(other), other);
    }
    assert.equal(toV1(labIngressV1), labIngressV1, "toV1 leaves v1 alone");
  });

  test("discovery: the v1beta1 resource list and the group's versions", () => {
    const v1Resources = {
      kind: "APIResourceList",
      apiVersion: "v1",
      groupVersion: "networking.k8s.io/v1",
      resources: [
        { name: "ingressclasses", singularName: "ingressclass", namespaced: false, kind: "IngressClass", verbs: ["get", "list", "watch"] },
        { name: "ingresses", singularName: "ingress", namespaced: true, kind: "Ingress", verbs: ["get", "list", "watch", "update"], shortNames: ["ing"] },
        { name: "ingresses/status", singularName: "", namespaced: true, kind: "Ingress", verbs: ["get", "patch", "update"] },
        { name: "networkpolicies", singularName: "networkpolicy", namespaced: true, kind: "NetworkPolicy", verbs: ["get"] },
      ],
    };
    assert.deepEqual(v1beta1ResourceList(v1Resources), {
      ...v1Resources,
      groupVersion: "networking.k8s.io/v1beta1",
      resources: v1Resources.resources.slice(0, 3),
    });
    const group = {
      name: "networking.k8s.io",
      versions: [{ groupVersion: "networking.k8s.io/v1", version: "v1" }],
      preferredVersion: { groupVersion: "networking.k8s.io/v1", version: "v1" },
    };
    const served = { ...group, versions: [...group.versions, { groupVersion: "networking.k8s.io/v1beta1", version: "v1beta1" }] };
    assert.deepEqual(withV1beta1Served({ kind: "APIGroup", apiVersion: "v1", ...group }), { kind: "APIGroup", apiVersion: "v1", ...served });
    const apps = { name: "apps", versions: [{ groupVersion: "apps/v1", version: "v1" }], preferredVersion: { groupVersion: "apps/v1", version: "v1" } };
    assert.deepEqual(withV1beta1Served({ kind: "APIGroupList", apiVersion: "v1", groups: [apps, group] }), {
      kind: "APIGroupList",
      apiVersion: "v1",
      groups: [apps, served],
    });
    assert.deepEqual(withV1beta1Served({ kind: "APIGroup", ...served }), { kind: "APIGroup", ...served }, "added once");
  });
});

describe("routes", () => {
  const q = (s: string) => new URLSearchParams(s);
  const v1 = (p: string) => `/apis/networking.k8s.io/v1${p}`;
  const beta = (p: string) => `/apis/networking.k8s.io/v1beta1${p}`;

  test("what client-go v0.23 asks for v1beta1 goes to the same place under v1", () => {
    const cases: Array<[string, string, string, string, boolean]> = [
      ["GET", "/ingresses", "limit=500&resourceVersion=0", "ingresses", false],
      ["GET", "/ingresses", "allowWatchBookmarks=true&resourceVersion=48220&timeout=7m45s&timeoutSeconds=465&watch=true", "ingresses", true],
      ["GET", "/namespaces/default/ingresses", "watch=1", "ingresses", true],
      ["GET", "/namespaces/default/ingresses/business-manager", "", "ingresses", false],
      ["PUT", "/namespaces/default/ingresses/business-manager/status", "", "ingresses", false],
      ["GET", "/ingressclasses/nginx", "", "ingressclasses", false],
      ["GET", "/watch/namespaces/default/ingresses", "", "ingresses", true],
    ];
    for (const [method, p, query, resource, watch] of cases) {
      assert.deepEqual(routeFor(method, beta(p), q(query)), { kind: "translate", upstreamPath: v1(p), resource, watch }, `${method} ${p}?${query}`);
    }
  });

  test("everything else passes, discovery aside", () => {
    for (const p of [
      "/version",
      "/api/v1/endpoints",
      "/api/v1/namespaces/default/secrets/x",
      v1("/ingresses"),
      beta("/namespaces/default/ingresses/x/scale"),
      beta("/ingressclasses/x/status"),
      beta("/ipaddresses"),
    ]) {
      assert.deepEqual(routeFor("GET", p, q("")), { kind: "pass" }, p);
    }
    assert.deepEqual(routeFor("GET", beta(""), q("")), { kind: "resource-list" });
    assert.deepEqual(routeFor("GET", "/apis", q("")), { kind: "group-discovery" });
    assert.deepEqual(routeFor("GET", "/apis/networking.k8s.io", q("")), { kind: "group-discovery" });
    assert.deepEqual(routeFor("POST", "/apis", q("")), { kind: "pass" });
  });

  test("?watch= reads as the API server reads it", () => {
    assert.deepEqual(["true", "1", "TRUE", "", "yes", "false", "False", "0"].map(isWatchParam), [true, true, true, true, true, false, false, false]);
    assert.equal(isWatchParam(null), false);
  });
});

describe("watch stream framing", () => {
  const events = [
    { type: "ADDED", object: labIngressV1 },
    { type: "MODIFIED", object: { kind: "Ingress", metadata: { annotations: { tricky: 'braces } { and "quotes" \\ and ünïcödé ✓ in a string' } } } },
    { type: "BOOKMARK", object: { kind: "Ingress", metadata: { resourceVersion: "9" } } },
  ];
  const stream = Buffer.from(events.map((e) => `${JSON.stringify(e)}\n`).join(""));

  test("whole events come out whatever the chunk boundaries, even inside a UTF-8 character", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const splitter = new JsonObjectSplitter();
      const texts = [...splitter.push(stream.subarray(0, cut)), ...splitter.push(stream.subarray(cut))];
      assert.deepEqual(
        texts.map((t) => JSON.parse(t)),
        events,
        `cut at ${cut}`,
      );
      assert.equal(splitter.midObject, false);
    }
  });

  test("one byte at a time, events without newlines between them, and a stream cut mid-event", () => {
    const splitter = new JsonObjectSplitter();
    const texts = [...Buffer.from(events.map((e) => JSON.stringify(e)).join(""))].flatMap((b) => splitter.push(Buffer.from([b])));
    assert.deepEqual(
      texts.map((t) => JSON.parse(t)),
      events,
    );
    const cut = new JsonObjectSplitter();
    assert.deepEqual(cut.push(stream.subarray(0, 10)), []);
    assert.equal(cut.midObject, true);
  });

  test("garbage between events is an error", () => {
    assert.throws(() => new JsonObjectSplitter().push(Buffer.from('{"a":1}\n<html>')), /expected a JSON object, found "<"/);
  });
});

describe("upstream config", () => {
  test("in a pod: the Service env, the service-account CA and token; overrides for a run outside", () => {
    assert.deepEqual(upstreamFromEnv({ KUBERNETES_SERVICE_HOST: "10.32.0.1", KUBERNETES_SERVICE_PORT: "443" }), {
      url: "https://10.32.0.1:443",
      caFile: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
      tokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token",
    });
    assert.equal(upstreamFromEnv({ KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" }).url, "https://[fd00::1]:443");
    assert.deepEqual(upstreamFromEnv({ UPSTREAM_URL: "http://127.0.0.1:8001", TOKEN_FILE: "/tmp/t" }), {
      url: "http://127.0.0.1:8001",
      caFile: undefined,
      tokenFile: "/tmp/t",
    });
    assert.throws(() => upstreamFromEnv({}), /KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set/);
  });

  test("the token is re-read: the new one is used, the one before still accepted", () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-token-"));
    const file = path.join(tmp, "token");
    fs.writeFileSync(file, "first\n");
    const lines: string[] = [];
    const token = new ServiceAccountToken(file, 3_600_000, (l) => lines.push(l));
    try {
      assert.equal(token.value, "first");
      fs.writeFileSync(file, "second");
      assert.equal(token.accepts("second"), true, "a mismatch re-reads the file");
      assert.equal(token.value, "second");
      assert.equal(token.accepts("first"), true);
      assert.equal(token.accepts("forged"), false);
      assert.equal(token.accepts(undefined), false);
      fs.rmSync(file);
      token.refresh();
      token.refresh();
      assert.equal(token.value, "second", "an unreadable file keeps the last token");
      assert.equal(lines.filter((l) => /cannot read/.test(l)).length, 1, "said once");
    } finally {
      token.stop();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

// ---- End to end: client -> adapter -> fake API server (HTTPS, bearer token checked, as the real one) ----

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** Bytes the passthrough must not touch: odd spacing, non-ASCII, and a protobuf-like binary body. */
const endpointsJson = Buffer.from(
  '{"kind":"Endpoints",  "apiVersion":"v1","metadata":{"name":"business-manager","annotations":{"note":"caf\\u00e9 ✓ <&>"}},\n "subsets":[]}\n',
);
const protobufBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

class FakeApiServer {
  readonly seen: Seen[] = [];
  token = "token-one";
  port = 0;
  /** Open streaming answers (watches), by path and query, for the test to write into. */
  readonly streams = new Map<string, { res: http.ServerResponse; closed: Promise<void> }>();
  #streamWaiters = new Map<string, (s: { res: http.ServerResponse; closed: Promise<void> }) => void>();
  #server: https.Server;

  constructor(tls: KeyPairPem) {
    this.#server = https.createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => void this.#handle(req, res));
  }

  async start() {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    this.port = (this.#server.address() as net.AddressInfo).port;
  }

  stop() {
    this.#server.closeAllConnections();
    this.#server.close();
  }

  /** The streaming answer for `url`, once the request for it has arrived. */
  stream(url: string): Promise<{ res: http.ServerResponse; closed: Promise<void> }> {
    const open = this.streams.get(url);
    if (open) return Promise.resolve(open);
    return within(new Promise((resolve) => this.#streamWaiters.set(url, resolve)), 5000, `a request for ${url}`);
  }

  last(pathname: string): Seen | undefined {
    return this.seen.findLast((s) => s.url.split("?")[0] === pathname);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const seen = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) };
    this.seen.push(seen);
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
      res.end(text);
    };
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      return json(401, { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: "Unauthorized", reason: "Unauthorized", code: 401 });
    }
    const { pathname, searchParams } = new URL(req.url!, "https://fake");
    const v1 = "/apis/networking.k8s.io/v1";
    if (searchParams.get("watch") === "true" || searchParams.get("watch") === "1") {
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-cache, private" });
      res.flushHeaders();
      const closed = new Promise<void>((resolve) => res.on("close", () => resolve()));
      const stream = { res, closed };
      this.streams.set(req.url!, stream);
      this.#streamWaiters.get(req.url!)?.(stream);
      return;
    }
    switch (`${req.method} ${pathname}`) {
      case "GET /version":
        return json(200, { major: "1", minor: "34", gitVersion: "v1.34.4" });
      case `GET ${v1}/ingresses`:
        return json(200, ingressListV1);
      case `GET ${v1}/namespaces/default/ingresses/business-manager`:
        return json(200, labIngressV1);
      case `GET ${v1}/namespaces/default/ingresses/missing`:
        return json(404, {
          kind: "Status",
          apiVersion: "v1",
          metadata: {},
          status: "Failure",
          message: 'ingresses.networking.k8s.io "missing" not found',
          reason: "NotFound",
          details: { name: "missing", group: "networking.k8s.io", kind: "ingresses" },
          code: 404,
        });
      case `GET ${v1}/namespaces/broken/ingresses`:
        res.writeHead(200, { "content-type": "text/html" });
        return res.end("<html>not an API server</html>");
      case `GET ${v1}/ingressclasses/nginx`:
        return json(200, ingressClassV1);
      case `PUT ${v1}/namespaces/default/ingresses/business-manager/status`: {
        // As the API server does: the object back, with a new resourceVersion.
        const object = JSON.parse(seen.body.toString());
        return json(200, { ...object, metadata: { ...object.metadata, resourceVersion: "48300" } });
      }
      case `GET ${v1}`:
        return json(200, {
          kind: "APIResourceList",
          apiVersion: "v1",
          groupVersion: "networking.k8s.io/v1",
          resources: [
            { name: "ingresses", namespaced: true, kind: "Ingress", verbs: ["get"] },
            { name: "networkpolicies", namespaced: true, kind: "NetworkPolicy", verbs: ["get"] },
          ],
        });
      case "GET /api/v1/namespaces/default/endpoints/business-manager":
        res.writeHead(
          200,
          [
            ["Content-Type", "application/json"],
            ["Content-Length", String(endpointsJson.length)],
            ["Warning", '299 - "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"'],
            ["Audit-Id", "6a0b4c1e"],
          ].flat(),
        );
        return res.end(endpointsJson);
      case "GET /api/v1/namespaces/default/secrets/blob":
        res.writeHead(200, { "content-type": "application/vnd.kubernetes.protobuf" });
        return res.end(protobufBytes);
      case "POST /api/v1/namespaces/default/events":
        res.writeHead(201, { "content-type": "application/json" });
        return res.end(seen.body); // echoes the bytes it got
      default:
        return json(404, {
          kind: "Status",
          apiVersion: "v1",
          metadata: {},
          status: "Failure",
          message: "the server could not find the requested resource",
          reason: "NotFound",
          code: 404,
        });
    }
  }
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

/** One request to the adapter over plain HTTP, as the controller sends it through -proxy. */
function request(
  port: number,
  method: string,
  path: string,
  body?: Buffer | string,
  headers: http.OutgoingHttpHeaders = {},
  tls?: { ca: string },
): Promise<Answer> {
  return within(
    new Promise<Answer>((resolve, reject) => {
      const options = { host: "127.0.0.1", port, method, path, headers, ...(tls ? { ca: tls.ca } : {}) };
      const req = (tls ? https : http).request(options, async (res) => {
        const chunks: Buffer[] = [];
        for await (const chunk of res) chunks.push(chunk as Buffer);
        resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) });
      });
      req.on("error", reject);
      req.end(body);
    }),
    5000,
    `${method} ${path}`,
  );
}
const json = (a: Answer) => JSON.parse(a.body.toString());

/** A streaming GET whose lines the test takes one at a time, while the stream stays open. */
function openLines(port: number, path: string) {
  const lines: string[] = [];
  const waiters: Array<(line: string) => void> = [];
  let buffered = "";
  let res: http.IncomingMessage | undefined;
  const req = http.get({ host: "127.0.0.1", port, path });
  const opened = within(
    new Promise<http.IncomingMessage>((resolve, reject) => {
      req.on("error", reject);
      req.on("response", (r) => {
        res = r;
        r.setEncoding("utf8");
        r.on("data", (text: string) => {
          buffered += text;
          for (let newline = buffered.indexOf("\n"); newline >= 0; newline = buffered.indexOf("\n")) {
            const line = buffered.slice(0, newline);
            buffered = buffered.slice(newline + 1);
            const waiter = waiters.shift();
            if (waiter) waiter(line);
            else lines.push(line);
          }
        });
        resolve(r);
      });
    }),
    5000,
    `the answer to ${path}`,
  );
  return {
    opened,
    ended: () => res?.readableEnded ?? false,
    next: (): Promise<unknown> =>
      within(lines.length ? Promise.resolve(lines.shift()!) : new Promise<string>((resolve) => waiters.push(resolve)), 5000, `a line from ${path}`).then((l) =>
        JSON.parse(l),
      ),
    close: () => req.destroy(),
  };
}

/** The adapter's serving certificate, as the Pki tier issues it (127.0.0.1, the lab CA). */
const ADAPTER_SERVING = { name: "ingress-adapter", commonName: "ingress-adapter", dns: [], ips: ["127.0.0.1"], usages: ["server" as const], ca: "ca" as const };

describe("adapter end to end", () => {
  let ca: KeyPairPem;
  let fake: FakeApiServer;
  let adapter: RunningIngressAdapter;
  let dir: string;
  let tokenFile: string;
  const log: string[] = [];
  const running: RunningIngressAdapter[] = [];

  async function startAdapter(extra: Partial<IngressAdapterArgs> = {}) {
    const a = await startIngressAdapter({
      host: "127.0.0.1",
      port: 0,
      upstream: `https://127.0.0.1:${fake.port}`,
      upstreamCa: ca.certPem,
      tokenFile,
      tokenRefreshMs: 50,
      log: (l) => log.push(l),
      ...extra,
    });
    running.push(a);
    return a;
  }

  before(async () => {
    ca = await createCa("k8slab test CA");
    const serving = await issueCertificate(ca, {
      name: "kube-apiserver",
      commonName: "kube-apiserver",
      dns: ["localhost"],
      ips: ["127.0.0.1"],
      usages: ["server"],
      ca: "ca",
    });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-ingress-adapter-"));
    tokenFile = path.join(dir, "token");
    fs.writeFileSync(tokenFile, "token-one\n");
    fake = new FakeApiServer(serving);
    await fake.start();
    adapter = await startAdapter();
  });

  after(async () => {
    await Promise.all(running.map((a) => a.stop(500)));
    fake?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("a v1beta1 list comes back converted, asked upstream as v1 JSON with the pod's token", async () => {
    const answer = await request(adapter.port, "GET", "/apis/networking.k8s.io/v1beta1/ingresses?limit=500&resourceVersion=0", undefined, {
      accept: "application/json, */*",
      "accept-encoding": "gzip",
    });
    assert.equal(answer.status, 200);
    assert.equal(answer.headers["content-type"], "application/json");
    assert.deepEqual(json(answer), ingressListV1beta1);
    const seen = fake.last("/apis/networking.k8s.io/v1/ingresses")!;
    assert.equal(seen.url, "/apis/networking.k8s.io/v1/ingresses?limit=500&resourceVersion=0");
    assert.equal(seen.headers.accept, "application/json");
    assert.equal(seen.headers["accept-encoding"], undefined, "no gzip: the adapter has to read it");
    assert.equal(seen.headers.authorization, "Bearer token-one");
    assert.ok(
      log.some((l) => l.startsWith("GET /apis/networking.k8s.io/v1beta1/ingresses?limit=500&resourceVersion=0 200 v1beta1->v1 ")),
      log.join("\n"),
    );
  });

  test("a v1beta1 get of an Ingress and of the IngressClass; an upstream 404 Status comes back as it is", async () => {
    const ingress = await request(adapter.port, "GET", "/apis/networking.k8s.io/v1beta1/namespaces/default/ingresses/business-manager");
    assert.equal(ingress.status, 200);
    assert.deepEqual(json(ingress), labIngressV1beta1);
    const ingressClass = await request(adapter.port, "GET", "/apis/networking.k8s.io/v1beta1/ingressclasses/nginx");
    assert.deepEqual(json(ingressClass), ingressClassV1beta1);
    const missing = await request(adapter.port, "GET", "/apis/networking.k8s.io/v1beta1/namespaces/default/ingresses/missing");
    assert.equal(missing.status, 404);
    assert.equal(json(missing).reason, "NotFound");
  });

  test("a watch streams converted events one by one while it stays open; the client leaving closes upstream", async () => {
    const query = "allowWatchBookmarks=true&resourceVersion=48220&timeoutSeconds=465&watch=true";
    const watch = openLines(adapter.port, `/apis/networking.k8s.io/v1beta1/ingresses?${query}`);
    const upstream = await fake.stream(`/apis/networking.k8s.io/v1/ingresses?${query}`);
    const client = await watch.opened;
    assert.equal(client.statusCode, 200);

    // The first event arrives in two pieces; the client must get it whole, before anything else is sent.
    const added = `${JSON.stringify({ type: "ADDED", object: labIngressV1 })}\n`;
    upstream.res.write(added.slice(0, 100));
    await new Promise((r) => setTimeout(r, 50));
    upstream.res.write(added.slice(100));
    assert.deepEqual(await watch.next(), { type: "ADDED", object: labIngressV1beta1 });

    // Two events in one chunk.
    const modified = { type: "MODIFIED", object: namedPortIngressV1 };
    const bookmark = { type: "BOOKMARK", object: { kind: "Ingress", apiVersion: "networking.k8s.io/v1", metadata: { resourceVersion: "48240" } } };
    upstream.res.write(`${JSON.stringify(modified)}\n${JSON.stringify(bookmark)}\n`);
    assert.deepEqual(await watch.next(), { type: "MODIFIED", object: namedPortIngressV1beta1 });
    assert.deepEqual(await watch.next(), { type: "BOOKMARK", object: { ...bookmark.object, apiVersion: "networking.k8s.io/v1beta1" } });
    assert.equal(watch.ended(), false, "the stream is still open");

    watch.close();
    await within(upstream.closed, 5000, "the upstream watch to close after the client left");
    await within(
      (async () => {
        while (!log.some((l) => l.includes(`?${query} 200 v1beta1->v1 events=3 client gone`))) await new Promise((r) => setTimeout(r, 20));
      })(),
      5000,
      `the watch's log line in:\n${log.join("\n")}`,
    );
  });

  test("an upstream watch that ends ends the client's watch cleanly; ERROR events pass unchanged", async () => {
    const watch = openLines(adapter.port, "/apis/networking.k8s.io/v1beta1/namespaces/default/ingresses?watch=1");
    const upstream = await fake.stream("/apis/networking.k8s.io/v1/namespaces/default/ingresses?watch=1");
    await watch.opened;
    upstream.res.end(`${JSON.stringify({ type: "ERROR", object: goneStatus })}\n`);
    assert.deepEqual(await watch.next(), { type: "ERROR", object: goneStatus });
    await within(
      (async () => {
        while (!watch.ended()) await new Promise((r) => setTimeout(r, 20));
      })(),
      5000,
      "the client's watch to end",
    );
  });

  test("a PUT of ingresses/status goes up as v1 and comes back as v1beta1", async () => {
    const update = { ...labIngressV1beta1, status: { loadBalancer: { ingress: [{ ip: "10.240.0.11" }] } } };
    const answer = await request(
      adapter.port,
      "PUT",
      "/apis/networking.k8s.io/v1beta1/namespaces/default/ingresses/business-manager/status",
      JSON.stringify(update),
      {
        "content-type": "application/json",
        accept: "application/json, */*",
      },
    );
    assert.equal(answer.status, 200, answer.body.toString());
    const sent = fake.last("/apis/networking.k8s.io/v1/namespaces/default/ingresses/business-manager/status")!;
    assert.equal(sent.method, "PUT");
    assert.deepEqual(JSON.parse(sent.body.toString()), { ...labIngressV1, status: update.status });
    assert.equal(sent.headers["content-length"], String(sent.body.length));
    assert.deepEqual(json(answer), { ...update, metadata: { ...update.metadata, resourceVersion: "48300" } });

    // A protobuf body cannot be converted: refused here rather than sent to v1 as a v1beta1 object.
    const before = fake.seen.length;
    const protobuf = await request(
      adapter.port,
      "PUT",
      "/apis/networking.k8s.io/v1beta1/namespaces/default/ingresses/business-manager/status",
      Buffer.from("k8s\0\n\x0b"),
      {
        "content-type": "application/vnd.kubernetes.protobuf",
      },
    );
    assert.equal(protobuf.status, 415);
    assert.match(json(protobuf).message, /must be JSON/);
    assert.equal(fake.seen.length, before, "nothing went upstream");
  });

  test("untouched paths pass byte for byte, both ways, headers included", async () => {
    const endpoints = await request(adapter.port, "GET", "/api/v1/namespaces/default/endpoints/business-manager", undefined, { accept: "application/json" });
    assert.equal(endpoints.status, 200);
    assert.ok(endpoints.body.equals(endpointsJson), endpoints.body.toString());
    assert.equal(endpoints.headers.warning, '299 - "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"');
    assert.equal(endpoints.headers["audit-id"], "6a0b4c1e");
    assert.equal(endpoints.headers["content-length"], String(endpointsJson.length));
    assert.equal(fake.last("/api/v1/namespaces/default/endpoints/business-manager")!.headers.accept, "application/json", "the client's Accept is kept");

    const secret = await request(adapter.port, "GET", "/api/v1/namespaces/default/secrets/blob", undefined, { accept: "application/vnd.kubernetes.protobuf" });
    assert.ok(secret.body.equals(protobufBytes));
    assert.equal(secret.headers["content-type"], "application/vnd.kubernetes.protobuf");

    const event = Buffer.from(
      '{"kind":"Event","apiVersion":"v1","involvedObject":{"kind":"Ingress","apiVersion":"networking.k8s.io/v1beta1"},  "message":"caf\u00e9"}',
    );
    const posted = await request(adapter.port, "POST", "/api/v1/namespaces/default/events", event, { "content-type": "application/json" });
    assert.equal(posted.status, 201);
    assert.ok(fake.last("/api/v1/namespaces/default/events")!.body.equals(event), "the request body arrived unchanged");
    assert.ok(posted.body.equals(event));

    const version = await request(adapter.port, "GET", "/version");
    assert.deepEqual(json(version), { major: "1", minor: "34", gitVersion: "v1.34.4" });
    assert.ok(
      log.some((l) => /^GET \/version 200 passthrough [\d.]+ms$/.test(l)),
      log.join("\n"),
    );
  });

  test("discovery: /apis/networking.k8s.io/v1beta1 lists Ingress from v1", async () => {
    const answer = await request(adapter.port, "GET", "/apis/networking.k8s.io/v1beta1");
    assert.deepEqual(json(answer), {
      kind: "APIResourceList",
      apiVersion: "v1",
      groupVersion: "networking.k8s.io/v1beta1",
      resources: [{ name: "ingresses", namespaced: true, kind: "Ingress", verbs: ["get"] }],
    });
  });

  test("the token file is re-read: after rotation the new token goes upstream", async () => {
    fs.writeFileSync(tokenFile, "token-two\n");
    fake.token = "token-two";
    try {
      await new Promise((r) => setTimeout(r, 200)); // a few refresh periods (50 ms here)
      const answer = await request(adapter.port, "GET", "/version");
      assert.equal(answer.status, 200);
      assert.equal(fake.last("/version")!.headers.authorization, "Bearer token-two");
    } finally {
      fs.writeFileSync(tokenFile, "token-one\n");
      fake.token = "token-one";
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  test("a bad upstream answer or an unreachable API server is a 502 Status, and the adapter keeps serving", async () => {
    const broken = await request(adapter.port, "GET", "/apis/networking.k8s.io/v1beta1/namespaces/broken/ingresses");
    assert.equal(broken.status, 502);
    const status = json(broken);
    assert.equal(status.kind, "Status");
    assert.equal(status.code, 502);
    assert.match(status.message, /the API server answered 200 text\/html that is not JSON: "<html>not an API server<\/html>"/);

    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const deadPort = (closed.address() as net.AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const orphan = await startAdapter({ upstream: `https://127.0.0.1:${deadPort}` });
    for (const p of ["/version", "/apis/networking.k8s.io/v1beta1/ingresses"]) {
      const answer = await request(orphan.port, "GET", p);
      assert.equal(answer.status, 502, p);
      assert.match(json(answer).message, /ECONNREFUSED/);
    }

    // An API server whose certificate the CA did not sign: refused, not trusted.
    const other = await startAdapter({ upstreamCa: (await createCa("some other CA")).certPem });
    const untrusted = await request(other.port, "GET", "/version");
    assert.equal(untrusted.status, 502);
    assert.match(json(untrusted).message, /certificate/i);

    assert.equal((await request(adapter.port, "GET", "/version")).status, 200, "still serving");
  });

  test("serving HTTPS (in-cluster config mode): clients must present the pod's token", async () => {
    const serving = await issueCertificate(ca, ADAPTER_SERVING);
    const secure = await startAdapter({ tls: { cert: serving.certPem, key: serving.keyPem } });
    const tls = { ca: ca.certPem };
    const anonymous = await request(secure.port, "GET", "/apis/networking.k8s.io/v1beta1/ingressclasses/nginx", undefined, {}, tls);
    assert.equal(anonymous.status, 401);
    assert.equal(json(anonymous).reason, "Unauthorized");
    const forged = await request(secure.port, "GET", "/version", undefined, { authorization: "Bearer stolen" }, tls);
    assert.equal(forged.status, 401);
    const ok = await request(secure.port, "GET", "/apis/networking.k8s.io/v1beta1/ingressclasses/nginx", undefined, { authorization: "Bearer token-one" }, tls);
    assert.equal(ok.status, 200);
    assert.deepEqual(json(ok), ingressClassV1beta1);
    await assert.rejects(
      startIngressAdapter({ host: "127.0.0.1", port: 0, upstream: "https://127.0.0.1:1", tls: { cert: serving.certPem, key: serving.keyPem }, log: () => {} }),
      /needs tokenFile/,
    );
  });

  test("the bundle runs on a bare node, configured by environment alone, and stops on SIGTERM", async () => {
    const outDir = path.join(dir, "bundles");
    const root = path.join(import.meta.dirname, "..");
    const built = spawnSync(process.execPath, ["--import", "tsx", "workloads/build.ts", outDir], { cwd: root, encoding: "utf8", timeout: 60_000 });
    assert.equal(built.status, 0, built.stderr);
    assert.match(fs.readFileSync(path.join(outDir, "SHA256SUMS"), "utf8"), /^[0-9a-f]{64} {2}ingress-adapter\.mjs$/m);

    fs.writeFileSync(path.join(dir, "ca.crt"), ca.certPem);
    const serving = await issueCertificate(ca, ADAPTER_SERVING);
    fs.writeFileSync(path.join(dir, "tls.crt"), serving.certPem);
    fs.writeFileSync(path.join(dir, "tls.key"), serving.keyPem);
    const env = {
      PATH: process.env.PATH ?? "",
      PORT: "0",
      UPSTREAM_URL: `https://127.0.0.1:${fake.port}`,
      UPSTREAM_CA_FILE: path.join(dir, "ca.crt"),
      TOKEN_FILE: tokenFile,
    };
    // Holding the pod's token, it will not serve plain HTTP.
    const plain = spawnSync(process.execPath, [path.join(outDir, "ingress-adapter.mjs")], { cwd: outDir, env, encoding: "utf8", timeout: 10_000 });
    assert.equal(plain.status, 2);
    assert.match(plain.stderr, /TLS_CERT_FILE and TLS_KEY_FILE must both be set/);
    const child = spawn(process.execPath, [path.join(outDir, "ingress-adapter.mjs")], {
      cwd: outDir,
      env: { ...env, TLS_CERT_FILE: path.join(dir, "tls.crt"), TLS_KEY_FILE: path.join(dir, "tls.key") },
    });
    let output = "";
    child.stdout.on("data", (c) => (output += c));
    child.stderr.on("data", (c) => (output += c));
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    try {
      const port = await within(
        new Promise<number>((resolve, reject) => {
          child.stdout.on("data", () => {
            const m = /ingress-adapter listening on 127\.0\.0\.1:(\d+) \(https\)/.exec(output);
            if (m) resolve(Number(m[1]));
          });
          child.once("exit", (code) => reject(new Error(`exited with ${code}:\n${output}`)));
        }),
        5000,
        "the bundle to listen",
      );
      const answer = await request(
        port,
        "GET",
        "/apis/networking.k8s.io/v1beta1/namespaces/default/ingresses/business-manager",
        undefined,
        { authorization: `Bearer ${fs.readFileSync(tokenFile, "utf8").trim()}` },
        { ca: ca.certPem },
      );
      assert.deepEqual(json(answer), labIngressV1beta1);
      child.kill("SIGTERM");
      assert.equal(await within(exited, 10_000, "the bundle to exit"), 0, output);
      assert.match(output, /^GET \/apis\/networking\.k8s\.io\/v1beta1\/namespaces\/default\/ingresses\/business-manager 200 v1beta1->v1 [\d.]+ms$/m);
      assert.match(output, /ingress-adapter: stopped/);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });
});

// The two demo workloads in one process: business-manager over HTTP, data-product over gRPC, on 127.0.0.1.

import assert from "node:assert/strict";
import net from "node:net";
import os from "node:os";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { type BusinessManagerArgs, keepConnected, type RunningBusinessManager, startBusinessManager } from "../workloads/business-manager/server.ts";
import { type RunningDataProduct, startDataProduct } from "../workloads/data-product/server.ts";
import { podIdentity, portFromEnv } from "../workloads/shared/env.ts";
import { DATA_PRODUCT_SERVICE, type HealthCheckResponse, loadWorkloadProtos } from "../workloads/shared/protos.ts";

// What the downward API would set in each Deployment.
const dataProductPod = podIdentity({ POD_NAME: "data-product-7d9f-abcde", POD_IP: "172.30.2.7", NODE_NAME: "node2" });
const businessManagerPod = podIdentity({ POD_NAME: "business-manager-5c4b-xyz12", POD_IP: "172.30.1.4", NODE_NAME: "node1" });

const dataProductLog: string[] = [];
const businessManagerLog: string[] = [];
let dataProduct: RunningDataProduct;
let businessManager: RunningBusinessManager;
const running: RunningBusinessManager[] = [];

before(async () => {
  dataProduct = await startDataProduct({ host: "127.0.0.1", port: 0, pod: dataProductPod, log: (l) => dataProductLog.push(l) });
  businessManager = await startBusinessManagerFor(`127.0.0.1:${dataProduct.port}`, { log: (l) => businessManagerLog.push(l) });
});

after(async () => {
  await Promise.all([dataProduct?.stop(1000), ...running.map((bm) => bm.stop(1000))]);
});

async function startBusinessManagerFor(dataProductAddr: string, extra: Partial<BusinessManagerArgs> = {}) {
  const bm = await startBusinessManager({ host: "127.0.0.1", port: 0, pod: businessManagerPod, dataProductAddr, log: () => {}, ...extra });
  running.push(bm);
  return bm;
}

async function get(bm: RunningBusinessManager, path: string, init: RequestInit = {}) {
  const res = await fetch(`http://127.0.0.1:${bm.port}${path}`, { ...init, signal: AbortSignal.timeout(5000) });
  assert.equal(res.headers.get("content-type"), "application/json");
  return { status: res.status, body: (await res.json()) as any };
}

/** A port nothing listens on: bind an ephemeral one, then close it. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test("pod identity comes from the downward API, else from the host", () => {
  assert.deepEqual(dataProductPod, { pod: "data-product-7d9f-abcde", ip: "172.30.2.7", node: "node2" });
  const fallback = podIdentity({});
  assert.equal(fallback.pod, os.hostname());
  assert.equal(fallback.node, os.hostname());
  assert.match(fallback.ip, /^\d+\.\d+\.\d+\.\d+$/);
  assert.notEqual(fallback.ip.split(".")[0], "127", "a non-loopback address when the host has one");
});

test("ports come from the environment, strictly", () => {
  assert.equal(portFromEnv("PORT", 80, {}), 80);
  assert.equal(portFromEnv("PORT", 80, { PORT: "8080" }), 8080);
  assert.throws(() => portFromEnv("PORT", 80, { PORT: "tcp://10.254.3.4:80" }), /PORT="tcp:\/\/10.254.3.4:80" is not a TCP port/);
  assert.throws(() => portFromEnv("PORT", 80, { PORT: "70000" }), /not a TCP port/);
});

test("GET / names both hops and the product", async () => {
  const { status, body } = await get(businessManager, "/");
  assert.equal(status, 200);
  assert.deepEqual(body.businessManager, { pod: "business-manager-5c4b-xyz12", ip: "172.30.1.4", node: "node1" });
  assert.deepEqual(body.dataProduct, { pod: "data-product-7d9f-abcde", ip: "172.30.2.7", node: "node2" });
  assert.deepEqual(body.product, { id: "1", name: "VXLAN tunnel (one VNI)", priceCents: 1450, currency: "EUR" });
  assert.equal(typeof body.latencyMs, "number");
  assert.ok(
    businessManagerLog.some((l) => /^GET \/ 200 [\d.]+ms$/.test(l)),
    businessManagerLog.join("\n"),
  );
  assert.ok(
    dataProductLog.some((l) => /^GetProduct id="1" OK peer=127\.0\.0\.1:\d+$/.test(l)),
    dataProductLog.join("\n"),
  );
});

test("GET /products/:id asks for that product; an unknown one is a 404 naming the gRPC status", async () => {
  const found = await get(businessManager, "/products/3");
  assert.equal(found.status, 200);
  assert.equal(found.body.product.name, "CoreDNS lookup");

  const missing = await get(businessManager, "/products/42");
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error, 'data-product has no product "42"');
  assert.deepEqual(missing.body.grpc, { code: grpc.status.NOT_FOUND, status: "NOT_FOUND", message: 'no product with id "42"' });
});

test("data-product down: 502 naming the target, the gRPC code and message", async () => {
  const target = `127.0.0.1:${await closedPort()}`;
  const orphan = await startBusinessManagerFor(target);
  const { status, body } = await get(orphan, "/");
  assert.equal(status, 502);
  assert.equal(body.error, `could not get product "1" from data-product at ${target}`);
  assert.equal(body.target, target);
  assert.equal(body.grpc.code, grpc.status.UNAVAILABLE);
  assert.equal(body.grpc.status, "UNAVAILABLE");
  assert.match(body.grpc.message, /\S/);
  assert.deepEqual(body.businessManager, businessManagerPod);

  // Still ready, on purpose (see readiness() in business-manager/server.ts), but saying why / fails.
  const ready = await get(orphan, "/readyz");
  assert.equal(ready.status, 200);
  assert.equal(ready.body.dataProduct.target, target);
  assert.equal(ready.body.dataProduct.status, "UNAVAILABLE");
});

test("a data-product name that does not resolve: tried again within the deadline, then 502 naming the failed lookup", async () => {
  const target = "k8slab-no-such-name.invalid:50051";
  const bm = await startBusinessManagerFor(target, { deadlineMs: 1500 });
  const started = performance.now();
  const { status, body } = await get(bm, "/");
  assert.equal(status, 502);
  assert.equal(body.grpc.status, "UNAVAILABLE");
  assert.match(body.grpc.message, /Name resolution failed for target dns:k8slab-no-such-name\.invalid:50051/);
  assert.ok(performance.now() - started >= 1000, "it waited for another lookup before giving up");
  assert.ok(performance.now() - started < 4000, "within about the deadline");
  await bm.stop(0);
});

test("a data-product that never answers costs at most the deadline: 502 DEADLINE_EXCEEDED", async () => {
  // Accepts TCP connections and says nothing, like a backend stuck behind a black hole.
  const accepted: net.Socket[] = [];
  const silent = net.createServer((socket) => accepted.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  try {
    const target = `127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    const bm = await startBusinessManagerFor(target, { deadlineMs: 300 });
    const started = performance.now();
    const { status, body } = await get(bm, "/");
    assert.equal(status, 502);
    assert.equal(body.grpc.status, "DEADLINE_EXCEEDED");
    assert.ok(performance.now() - started < 2000, "answered soon after the deadline");
    await bm.stop(0);
  } finally {
    for (const socket of accepted) socket.destroy();
    silent.close();
  }
});

/** A TCP proxy to 127.0.0.1:port that counts the connections made through it. */
async function countingProxy(port: number) {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    const upstream = net.connect(port, "127.0.0.1");
    socket.pipe(upstream).pipe(socket);
    socket.on("error", () => upstream.destroy());
    upstream.on("error", () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { target: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, connections: () => connections, close: () => server.close() };
}

/** Polls `holds` every 10 ms: true once it holds, false when `withinMs` passed first. */
async function until(holds: () => boolean, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (!holds()) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

/** Follows the channel's state changes until it is in `wanted` or `withinMs` passed; the states it went through. */
async function waitForState(
  channel: ReturnType<grpc.Client["getChannel"]>,
  wanted: grpc.connectivityState,
  withinMs: number,
): Promise<{ reached: boolean; seen: string[] }> {
  const deadline = Date.now() + withinMs;
  const seen: string[] = [];
  for (;;) {
    const state = channel.getConnectivityState(false);
    seen.push(grpc.connectivityState[state]);
    if (state === wanted) return { reached: true, seen };
    const changed = await new Promise<boolean>((resolve) => channel.watchConnectivityState(state, deadline, (err) => resolve(!err)));
    if (!changed) return { reached: false, seen };
  }
}

test("keepConnected reconnects when the server ends a connection for its age; without it the channel stays idle", async () => {
  // data-product ends connections after 30 s; here after 200 ms. Each channel has its own counting proxy.
  const server = new grpc.Server({ "grpc.max_connection_age_ms": 200, "grpc.max_connection_age_grace_ms": 100 });
  server.addService(loadWorkloadProtos().Health.service, {});
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  const [warmProxy, plainProxy] = await Promise.all([countingProxy(port), countingProxy(port)]);
  const { Health } = loadWorkloadProtos();
  const warm = new Health(warmProxy.target, grpc.credentials.createInsecure());
  const plain = new Health(plainProxy.target, grpc.credentials.createInsecure());
  try {
    keepConnected(warm);
    plain.getChannel().getConnectivityState(true);
    // A new connection after each GOAWAY, about every 300 ms: three take about 0.6 s, and 15 s on a host
    // under load. Any one moment may fall between two connections, so each state is waited for, not sampled.
    assert.ok(await until(() => warmProxy.connections() >= 3, 15_000), `the kept channel connected ${warmProxy.connections()} time(s) in 15 s, not 3`);
    const ready = await waitForState(warm.getChannel(), grpc.connectivityState.READY, 10_000);
    assert.ok(ready.reached, `the kept channel is connected again (states seen: ${ready.seen.join(" -> ")})`);
    const idle = await waitForState(plain.getChannel(), grpc.connectivityState.IDLE, 10_000);
    assert.ok(idle.reached, `the plain channel went idle at its first GOAWAY (states seen: ${idle.seen.join(" -> ")})`);
    assert.equal(plainProxy.connections(), 1, "the plain channel connected once, and not again");
  } finally {
    warm.close();
    plain.close();
    warmProxy.close();
    plainProxy.close();
    server.forceShutdown();
  }
});

test("health endpoints and unknown routes", async () => {
  assert.deepEqual(await get(businessManager, "/healthz"), { status: 200, body: { alive: true } });

  const ready = await get(businessManager, "/readyz");
  assert.equal(ready.status, 200);
  assert.deepEqual(ready.body.dataProduct, { target: `127.0.0.1:${dataProduct.port}`, status: "SERVING" });

  const unknown = await get(businessManager, "/orders");
  assert.equal(unknown.status, 404);
  assert.deepEqual(unknown.body.routes, ["/", "/products/:id", "/healthz", "/readyz"]);

  const post = await get(businessManager, "/", { method: "POST" });
  assert.equal(post.status, 405);
});

test("data-product answers the standard gRPC health check", async () => {
  const { Health } = loadWorkloadProtos();
  const health = new Health(`127.0.0.1:${dataProduct.port}`, grpc.credentials.createInsecure());
  const check = (service: string) =>
    new Promise<HealthCheckResponse>((resolve, reject) =>
      health.Check({ service }, { deadline: Date.now() + 2000 }, (err, reply) => (err ? reject(err) : resolve(reply!))),
    );
  try {
    assert.deepEqual(await check(""), { status: "SERVING" });
    assert.deepEqual(await check(DATA_PRODUCT_SERVICE), { status: "SERVING" });
    await assert.rejects(check("no.such.Service"), { code: grpc.status.NOT_FOUND });
  } finally {
    health.close();
  }
});

test("stop() closes the listener", async () => {
  const bm = await startBusinessManagerFor(`127.0.0.1:${dataProduct.port}`);
  assert.equal((await get(bm, "/healthz")).status, 200);
  await bm.stop(1000);
  await assert.rejects(fetch(`http://127.0.0.1:${bm.port}/healthz`, { signal: AbortSignal.timeout(2000) }), TypeError);
});

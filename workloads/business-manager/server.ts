// The business-manager HTTP server: each product request asks data-product over gRPC and names both hops.
import http from "node:http";
import type { AddressInfo } from "node:net";
import * as grpc from "@grpc/grpc-js";
import type { PodIdentity } from "../shared/env.ts";
import { DATA_PRODUCT_SERVICE, type HealthCheckResponse, loadWorkloadProtos, type Product } from "../shared/protos.ts";

export interface BusinessManagerArgs {
  /** Address to bind: "0.0.0.0" in a pod, "127.0.0.1" in tests. */
  host: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /** The pod every answer names as businessManager. */
  pod: PodIdentity;
  /** data-product's gRPC address; in the cluster its Service name, "data-product:50051". */
  dataProductAddr: string;
  /**
   * How long a GetProduct call may take before it fails with DEADLINE_EXCEEDED. Default 5000: the
   * lab's nodes run under TCG, where a busy node took over 2 s to answer (CI, 2026-11-22).
   */
  deadlineMs?: number;
  /** How long /readyz waits for data-product's health check. Default 500, under kubelet's 1 s probe timeout. */
  healthDeadlineMs?: number;
  /** Receives one line per request: method, path, status, duration. */
  log: (line: string) => void;
}

export interface RunningBusinessManager {
  /** The port actually bound (differs from args.port when that was 0). */
  port: number;
  /** Stops accepting, lets requests in flight finish for up to graceMs, then closes every connection. */
  stop(graceMs?: number): Promise<void>;
}

/** The product GET / shows, so a bare `curl http://k8s.test.com/` crosses both hops. */
export const DEFAULT_PRODUCT_ID = "1";

interface Answer {
  status: number;
  body: unknown;
}

export async function startBusinessManager(args: BusinessManagerArgs): Promise<RunningBusinessManager> {
  const { dataProductAddr: target, deadlineMs = 5000, healthDeadlineMs = 500 } = args;
  const { DataProduct, Health } = loadWorkloadProtos();
  // Both clients share one HTTP/2 connection: grpc-js pools connections per target and options.
  // Short retry intervals: after the lab's DNS or Service path comes back (a probe fault undone,
  // a workshop repair), the flow works again within seconds, not after grpc-js's 2-minute backoff.
  const channel: grpc.ChannelOptions = {
    "grpc.initial_reconnect_backoff_ms": 500,
    "grpc.max_reconnect_backoff_ms": 5000,
    // A failed lookup is tried again after a second (see getProduct), not after five.
    "grpc.dns_min_time_between_resolutions_ms": 1000,
  };
  const dataProduct = new DataProduct(target, grpc.credentials.createInsecure(), channel);
  const health = new Health(target, grpc.credentials.createInsecure(), channel);
  keepConnected(dataProduct);
  let draining = false;

  /**
   * One GetProduct within the deadline. A call that met a failed name lookup (the channel resolves
   * data-product again as it reconnects every 30 s) waits once for the next lookup: one lost DNS
   * answer is not an outage. When DNS is really broken the second try fails too, and the first
   * failure, which names the lookup, is what the caller sees.
   */
  async function callGetProduct(id: string): Promise<Product> {
    const deadline = Date.now() + deadlineMs;
    const call = (waitForReady: boolean) =>
      unaryCall<Product>((done) => dataProduct.GetProduct({ id }, new grpc.Metadata({ waitForReady }), { deadline }, done));
    try {
      return await call(false);
    } catch (err) {
      const { code, details } = err as Partial<grpc.ServiceError>;
      if (code !== grpc.status.UNAVAILABLE || !details?.includes("Name resolution failed")) throw err;
      return call(true).catch(() => Promise.reject(err));
    }
  }

  async function getProduct(id: string): Promise<Answer> {
    const started = performance.now();
    try {
      const { servedBy, ...product } = await callGetProduct(id);
      return { status: 200, body: { businessManager: args.pod, dataProduct: servedBy, product, latencyMs: msSince(started) } };
    } catch (err) {
      const failure = grpcFailure(err);
      const notFound = failure.code === grpc.status.NOT_FOUND;
      return {
        // 502: the gateway (business-manager) is fine, the service behind it is not.
        status: notFound ? 404 : 502,
        body: {
          error: notFound ? `data-product has no product ${JSON.stringify(id)}` : `could not get product ${JSON.stringify(id)} from data-product at ${target}`,
          target,
          grpc: failure,
          businessManager: args.pod,
          latencyMs: msSince(started),
        },
      };
    }
  }

  // Readiness does not depend on data-product. If it did, a data-product outage would
  // take every business-manager pod out of its Service at once: the ingress would answer
  // a bare 503 and the lab's probes would blame the ingress tier, while the broken hop is
  // business-manager -> data-product. Staying ready keeps GET / answering 502 with the
  // target and the gRPC status, which names the real culprit. The body still shows
  // data-product's health for whoever reads it by hand. Only draining makes a pod unready.
  async function readiness(): Promise<Answer> {
    let dataProductHealth: { target: string; status: string; message?: string };
    try {
      const { status } = await unaryCall<HealthCheckResponse>((done) =>
        health.Check({ service: DATA_PRODUCT_SERVICE }, { deadline: Date.now() + healthDeadlineMs }, done),
      );
      dataProductHealth = { target, status };
    } catch (err) {
      const failure = grpcFailure(err);
      dataProductHealth = { target, status: failure.status, message: failure.message };
    }
    return { status: draining ? 503 : 200, body: { ready: !draining, businessManager: args.pod, dataProduct: dataProductHealth } };
  }

  async function route(method: string, path: string): Promise<Answer> {
    if (method !== "GET") return { status: 405, body: { error: `${method} is not supported; use GET` } };
    if (path === "/healthz") return { status: 200, body: { alive: true } }; // liveness: the event loop answers
    if (path === "/readyz") return readiness();
    if (path === "/") return getProduct(DEFAULT_PRODUCT_ID);
    const productId = /^\/products\/([^/]+)$/.exec(path)?.[1];
    if (productId) return getProduct(productId);
    return { status: 404, body: { error: `no route for ${path}`, routes: ["/", "/products/:id", "/healthz", "/readyz"] } };
  }

  const server = http.createServer(
    // Longer than nginx's upstream keepalive (60 s), so nginx, not Node, closes an idle
    // connection; the other way round nginx may send a request into a closing socket.
    { keepAliveTimeout: 65_000 },
    async (req, res) => {
      const started = performance.now();
      const path = new URL(req.url ?? "/", "http://business-manager").pathname;
      res.on("finish", () => args.log(`${req.method} ${req.url} ${res.statusCode} ${msSince(started)}ms`));
      let answer: Answer;
      try {
        answer = await route(req.method ?? "GET", path);
      } catch (err) {
        answer = { status: 500, body: { error: String(err) } };
      }
      if (answer.status === 405) res.setHeader("Allow", "GET");
      if (draining) res.setHeader("Connection", "close");
      res.writeHead(answer.status, { "Content-Type": "application/json" });
      res.end(`${JSON.stringify(answer.body, null, 2)}\n`);
    },
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(args.port, args.host, resolve);
  });

  return {
    port: (server.address() as AddressInfo).port,
    stop(graceMs = 10_000) {
      draining = true;
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), graceMs);
        server.close(() => {
          clearTimeout(force);
          dataProduct.close();
          health.close();
          resolve();
        });
        server.closeIdleConnections();
      });
    },
  };
}

/** Wraps a callback-style unary call in a promise. */
function unaryCall<Res>(start: (done: grpc.requestCallback<Res>) => void): Promise<Res> {
  return new Promise((resolve, reject) => start((err, reply) => (err ? reject(err) : resolve(reply!))));
}

/** What the caller needs to know about a failed call: the gRPC code, its name and the message. */
function grpcFailure(err: unknown): { code: number; status: string; message: string } {
  const { code = grpc.status.UNKNOWN, details } = err as Partial<grpc.ServiceError>;
  return { code, status: grpc.status[code] ?? "UNKNOWN", message: details || String(err) };
}

function msSince(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}

/**
 * data-product closes every connection after 30 s (so kube-proxy spreads them again), and grpc-js
 * then leaves the channel idle until the next call, which pays for the DNS lookup and the TCP and
 * HTTP/2 handshakes inside its deadline: under TCG that took most of the old 2 s. Reconnecting as
 * soon as the channel goes idle keeps a connection ready, still a new one (a new pick) each time.
 */
export function keepConnected(client: grpc.Client): void {
  const channel = client.getChannel();
  const watch = (state: grpc.connectivityState) => {
    if (state === grpc.connectivityState.SHUTDOWN) return; // closed: stop watching
    // getConnectivityState(true) leaves IDLE: it resolves the name and connects.
    if (state === grpc.connectivityState.IDLE) state = channel.getConnectivityState(true);
    channel.watchConnectivityState(state, Infinity, () => watch(channel.getConnectivityState(false)));
  };
  watch(channel.getConnectivityState(true));
}

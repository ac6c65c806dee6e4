// The data-product gRPC server: GetProduct from the catalog, and grpc.health.v1 for probes.
import * as grpc from "@grpc/grpc-js";
import type { PodIdentity } from "../shared/env.ts";
import {
  DATA_PRODUCT_SERVICE,
  type GetProductRequest,
  type HealthCheckRequest,
  type HealthCheckResponse,
  loadWorkloadProtos,
  type Product,
  type ServingStatus,
} from "../shared/protos.ts";
import { CATALOG } from "./catalog.ts";

export interface DataProductArgs {
  /** Address to bind: "0.0.0.0" in a pod, "127.0.0.1" in tests. */
  host: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /** The pod every reply names in served_by. */
  pod: PodIdentity;
  /** Receives one line per call. */
  log: (line: string) => void;
}

export interface RunningDataProduct {
  /** The port actually bound (differs from args.port when that was 0). */
  port: number;
  /** Reports NOT_SERVING, lets calls in flight finish for up to graceMs, then cuts the rest. */
  stop(graceMs?: number): Promise<void>;
}

export async function startDataProduct(args: DataProductArgs): Promise<RunningDataProduct> {
  const { DataProduct, Health } = loadWorkloadProtos();
  let status: ServingStatus = "SERVING";

  // A gRPC client keeps one HTTP/2 connection, and kube-proxy picks a backend per
  // connection, so without this each business-manager pod would talk to one
  // data-product pod forever. Closing connections after 30 s makes clients reconnect
  // and lets the Service spread them again.
  const server = new grpc.Server({ "grpc.max_connection_age_ms": 30_000 });

  server.addService(DataProduct.service, {
    GetProduct(call: grpc.ServerUnaryCall<GetProductRequest, Product>, reply: grpc.sendUnaryData<Product>) {
      const entry = CATALOG.get(call.request.id);
      args.log(`GetProduct id=${JSON.stringify(call.request.id)} ${entry ? "OK" : "NOT_FOUND"} peer=${call.getPeer()}`);
      if (!entry) return reply({ code: grpc.status.NOT_FOUND, details: `no product with id ${JSON.stringify(call.request.id)}` });
      reply(null, { ...entry, servedBy: args.pod });
    },
  });

  server.addService(Health.service, {
    Check(call: grpc.ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, reply: grpc.sendUnaryData<HealthCheckResponse>) {
      const { service } = call.request;
      const known = service === "" || service === DATA_PRODUCT_SERVICE;
      args.log(`Health.Check service=${JSON.stringify(service)} ${known ? status : "NOT_FOUND"} peer=${call.getPeer()}`);
      // The health-checking spec answers an unknown service with the NOT_FOUND status code.
      if (!known) return reply({ code: grpc.status.NOT_FOUND, details: `unknown service ${JSON.stringify(service)}` });
      reply(null, { status });
    },
  });

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${args.host}:${args.port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );

  return {
    port,
    stop(graceMs = 10_000) {
      status = "NOT_SERVING";
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    },
  };
}

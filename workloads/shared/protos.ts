// Loads the workloads' .proto files, from workloads/proto/ under tsx or from the text a bundle embeds.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { PodIdentity } from "./env.ts";

export const PROTO_FILES = ["dataproduct.proto", "health.proto"];
export const PROTO_DIR = fileURLToPath(new URL("../proto/", import.meta.url));

// workloads/build.ts replaces this name with the JSON text of { "dataproduct.proto": "<text>", ... },
// so a bundle needs no files beside it. Under tsx the name is not defined at all.
declare const K8SLAB_EMBEDDED_PROTOS: string | undefined;

// Field names become camelCase (price_cents -> priceCents) and every field is present,
// zero values included, so JSON built from a reply has a fixed shape.
const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: String, enums: String, defaults: true };

export function loadWorkloadProtos(): WorkloadProtos {
  const embedded: Record<string, string> | undefined = typeof K8SLAB_EMBEDDED_PROTOS === "undefined" ? undefined : JSON.parse(K8SLAB_EMBEDDED_PROTOS);
  // proto-loader reads files only, so a bundle writes its protos to a scratch directory first.
  const dir = embedded ? writeProtos(embedded) : PROTO_DIR;
  try {
    const definition = protoLoader.loadSync(PROTO_FILES, { ...LOADER_OPTIONS, includeDirs: [dir] });
    const loaded = grpc.loadPackageDefinition(definition) as any;
    return {
      DataProduct: loaded.k8slab.dataproduct.v1.DataProduct,
      Health: loaded.grpc.health.v1.Health,
    };
  } finally {
    if (embedded) fs.rmSync(dir, { recursive: true, force: true });
  }
}

function writeProtos(texts: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-protos-"));
  for (const [file, text] of Object.entries(texts)) fs.writeFileSync(path.join(dir, file), text);
  return dir;
}

export interface WorkloadProtos {
  DataProduct: ClientConstructor<DataProductClient>;
  Health: ClientConstructor<HealthClient>;
}

/** A generated client class: `new DataProduct(address, credentials)`, and its `.service` for servers. */
export interface ClientConstructor<C extends grpc.Client> {
  new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions): C;
  service: grpc.ServiceDefinition;
}

type UnaryMethod<Req, Res> = {
  (request: Req, options: grpc.CallOptions, callback: grpc.requestCallback<Res>): grpc.ClientUnaryCall;
  (request: Req, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<Res>): grpc.ClientUnaryCall;
};
export interface DataProductClient extends grpc.Client {
  GetProduct: UnaryMethod<GetProductRequest, Product>;
}
export interface HealthClient extends grpc.Client {
  Check: UnaryMethod<HealthCheckRequest, HealthCheckResponse>;
}

/** The fully qualified name the health service answers for, besides "" (the whole server). */
export const DATA_PRODUCT_SERVICE = "k8slab.dataproduct.v1.DataProduct";

// The messages as proto-loader hands them to JavaScript (see LOADER_OPTIONS).
export interface GetProductRequest {
  id: string;
}
export interface Product {
  id: string;
  name: string;
  priceCents: number;
  currency: string;
  servedBy: PodIdentity;
}
export interface HealthCheckRequest {
  service: string;
}
export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";
export interface HealthCheckResponse {
  status: ServingStatus;
}

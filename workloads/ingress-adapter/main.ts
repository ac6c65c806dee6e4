// Runs the ingress API adapter as its container does: API server from the pod's in-cluster config, loopback port from PORT, stop on SIGTERM.
import fs from "node:fs";
import { portFromEnv } from "../shared/env.ts";
import { startIngressAdapter } from "./server.ts";
import { upstreamFromEnv } from "./upstream.ts";

const env = process.env;
// The pod shares the node's network: anything but loopback would offer the adapter's rights to the LAN.
const host = env.LISTEN_HOST || "127.0.0.1";
const upstream = upstreamFromEnv(env);
// TLS_CERT_FILE and TLS_KEY_FILE: HTTPS, and only clients presenting this pod's token are served. The
// adapter sends that token upstream, so over plain HTTP anyone on the node's loopback would borrow it:
// without both files it does not start.
if (!env.TLS_CERT_FILE || !env.TLS_KEY_FILE) {
  console.error("ingress-adapter: TLS_CERT_FILE and TLS_KEY_FILE must both be set: it holds the pod's token and serves only TLS");
  process.exit(2);
}
const tls = { cert: fs.readFileSync(env.TLS_CERT_FILE), key: fs.readFileSync(env.TLS_KEY_FILE) };

const adapter = await startIngressAdapter({
  host,
  port: portFromEnv("PORT", 18001),
  upstream: upstream.url,
  upstreamCa: upstream.caFile ? fs.readFileSync(upstream.caFile) : undefined,
  tokenFile: upstream.tokenFile,
  tls,
  log: (line) => console.log(line),
});
console.log(`ingress-adapter listening on ${host}:${adapter.port} (https), API server ${upstream.url}`);

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, async () => {
    console.log(`ingress-adapter: ${signal}, stopping`);
    await adapter.stop(5000);
    console.log("ingress-adapter: stopped");
    process.exit(0);
  });
}

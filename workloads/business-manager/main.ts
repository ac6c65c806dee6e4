// Runs business-manager as a pod does: identity, port and data-product's address from the environment.
import { podIdentity, portFromEnv } from "../shared/env.ts";
import { startBusinessManager } from "./server.ts";

const pod = podIdentity();
const host = process.env.LISTEN_HOST || "0.0.0.0";
// Not DATA_PRODUCT_PORT or _HOST: Kubernetes sets those itself (Docker-link style,
// e.g. DATA_PRODUCT_PORT=tcp://10.254.x.y:50051) for every Service in the namespace.
const dataProductAddr = process.env.DATA_PRODUCT_ADDR || "data-product:50051";
const server = await startBusinessManager({ host, port: portFromEnv("PORT", 80), pod, dataProductAddr, log: (line) => console.log(line) });
console.log(`business-manager listening on ${host}:${server.port} as pod ${pod.pod} (${pod.ip}) on node ${pod.node}, data-product at ${dataProductAddr}`);

// Kubernetes sends SIGTERM and waits terminationGracePeriodSeconds (30 s by default)
// before SIGKILL; 10 s of grace for requests in flight fits well inside that.
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, async () => {
    console.log(`business-manager: ${signal}, draining`);
    await server.stop(10_000);
    console.log("business-manager: stopped");
    process.exit(0);
  });
}

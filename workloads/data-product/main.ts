// Runs data-product as a pod does: identity and port from the environment, stop on SIGTERM.
import { podIdentity, portFromEnv } from "../shared/env.ts";
import { startDataProduct } from "./server.ts";

const pod = podIdentity();
const host = process.env.LISTEN_HOST || "0.0.0.0";
const server = await startDataProduct({ host, port: portFromEnv("PORT", 50051), pod, log: (line) => console.log(line) });
console.log(`data-product listening on ${host}:${server.port} as pod ${pod.pod} (${pod.ip}) on node ${pod.node}`);

// Kubernetes sends SIGTERM and waits terminationGracePeriodSeconds (30 s by default)
// before SIGKILL; 10 s of grace for calls in flight fits well inside that.
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, async () => {
    console.log(`data-product: ${signal}, draining`);
    await server.stop(10_000);
    console.log("data-product: stopped");
    process.exit(0);
  });
}

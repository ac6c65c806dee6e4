// What a workload learns from its environment: which pod it is (downward API) and where to listen.
import os from "node:os";

export interface PodIdentity {
  pod: string;
  ip: string;
  node: string;
}

/**
 * Reads POD_NAME, POD_IP and NODE_NAME (set in the Deployment from metadata.name,
 * status.podIP and spec.nodeName). Outside Kubernetes the process is its own "pod" on
 * its own "node", so the host name and the first non-loopback IPv4 stand in.
 */
export function podIdentity(env: NodeJS.ProcessEnv = process.env): PodIdentity {
  return {
    pod: env.POD_NAME || os.hostname(),
    ip: env.POD_IP || firstNonLoopbackIPv4() || "127.0.0.1",
    node: env.NODE_NAME || os.hostname(),
  };
}

function firstNonLoopbackIPv4(): string | undefined {
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

/** A TCP port from the environment, or the default; anything else is a startup error. */
export function portFromEnv(name: string, fallback: number, env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${name}=${JSON.stringify(raw)} is not a TCP port`);
  return port;
}

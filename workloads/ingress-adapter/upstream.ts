// Where the real API server is and how the adapter proves who it is: the pod's in-cluster config and its service-account token.
import crypto from "node:crypto";
import fs from "node:fs";

/** Where the kubelet mounts the pod's service-account token, the cluster CA and the namespace. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export interface UpstreamConfig {
  /** The API server's base URL. */
  url: string;
  /** PEM file of the CA the API server's certificate chains to (https only). */
  caFile?: string;
  /** The bearer token file, re-read while running because the kubelet rotates it. */
  tokenFile: string;
}

/**
 * The API server as client-go's rest.InClusterConfig finds it: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT,
 * the CA and token from the service-account mount. UPSTREAM_URL, UPSTREAM_CA_FILE and TOKEN_FILE override each part
 * (for a run outside a pod).
 */
export function upstreamFromEnv(env: NodeJS.ProcessEnv = process.env): UpstreamConfig {
  const url = env.UPSTREAM_URL || inClusterUrl(env);
  return {
    url,
    caFile: url.startsWith("https:") ? env.UPSTREAM_CA_FILE || `${SERVICE_ACCOUNT_DIR}/ca.crt` : undefined,
    tokenFile: env.TOKEN_FILE || `${SERVICE_ACCOUNT_DIR}/token`,
  };
}

function inClusterUrl(env: NodeJS.ProcessEnv): string {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new Error("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not in a pod?); set UPSTREAM_URL");
  return `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/**
 * The pod's service-account token, re-read every refreshMs. Bound tokens live an hour and the kubelet
 * rewrites the file at 80% of that; client-go re-reads once a minute, and so does this by default.
 */
export class ServiceAccountToken {
  #current: string | undefined;
  #previous: string | undefined;
  #failing = false;
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly file: string,
    refreshMs: number,
    private readonly log: (line: string) => void,
  ) {
    this.refresh();
    this.#timer = setInterval(() => this.refresh(), refreshMs);
    this.#timer.unref();
  }

  /** The token read last; undefined until the file could be read once. */
  get value(): string | undefined {
    return this.#current;
  }

  refresh(): void {
    try {
      const token = fs.readFileSync(this.file, "utf8").trim();
      if (this.#failing) this.log(`token: ${this.file} readable again`);
      this.#failing = false;
      if (token && token !== this.#current) {
        this.#previous = this.#current;
        this.#current = token;
      }
    } catch (err) {
      // Keep the last good token; say so once per run of failures, not once a minute.
      if (!this.#failing) this.log(`token: cannot read ${this.file}: ${(err as Error).message}; keeping the last one`);
      this.#failing = true;
    }
  }

  /**
   * True when a client presents this pod's token. The client (client-go) and the adapter re-read the
   * file at different moments, so the token before the current one is accepted too, and a mismatch
   * re-reads the file once before refusing.
   */
  accepts(presented: string | undefined): boolean {
    if (!presented) return false;
    if (this.#matches(presented)) return true;
    this.refresh();
    return this.#matches(presented);
  }

  #matches(presented: string): boolean {
    return [this.#current, this.#previous].some((token) => token !== undefined && sameText(token, presented));
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

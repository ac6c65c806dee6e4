// The probes' way to the API server. kubectl gives a TLS handshake 10 s and cannot be told otherwise, and
// every kubectl process makes its own: on a control-plane node starved of CPU (pressure 95 %, a process
// start 28 times the reference) the handshakes took longer and every read failed, though the API server
// answered each request it got. So kubectl speaks plain HTTP to this relay in the probing process, which
// keeps its TLS connections to the API server open (keep-alive) with the kubeconfig's client certificate:
// a handshake per connection, not per kubectl, with a deadline the caller sets from the node's pace.
// Only this run can use it: it listens on 127.0.0.1 and answers only under a random path prefix, which kubectl
// reads from a kubeconfig of mode 0600 in a folder of mode 0700 (client-go sends no credentials over plain
// HTTP, so the secret is in the server's URL). Upgrades (exec, port-forward) are not relayed.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import yaml from "js-yaml";

/** Words in the relay's answer when the API server did not answer in time (live.ts counts them as "too slow"). */
export const RELAY_TIMED_OUT = "k8slab api relay: the API server did not answer within";

interface Kubeconfig {
  "current-context"?: string;
  clusters?: { name: string; cluster: { server: string; "certificate-authority-data"?: string; "certificate-authority"?: string } }[];
  users?: {
    name: string;
    user: { "client-certificate-data"?: string; "client-key-data"?: string; "client-certificate"?: string; "client-key"?: string; token?: string };
  }[];
  contexts?: { name: string; context: { cluster: string; user: string } }[];
}

/** The current context's server and credentials, from a kubeconfig's text (data fields, or files beside it). */
export function upstreamOf(text: string, dir = "."): { server: URL; ca?: Buffer; cert?: Buffer; key?: Buffer; token?: string } {
  const k = yaml.load(text) as Kubeconfig;
  const ctx = k.contexts?.find((c) => c.name === k["current-context"])?.context ?? k.contexts?.[0]?.context;
  const cluster = k.clusters?.find((c) => c.name === ctx?.cluster)?.cluster;
  const user = k.users?.find((u) => u.name === ctx?.user)?.user ?? {};
  if (!cluster?.server) throw new Error("the kubeconfig names no server for its current context");
  const data = (inline?: string, file?: string) => (inline ? Buffer.from(inline, "base64") : file ? fs.readFileSync(path.resolve(dir, file)) : undefined);
  return {
    server: new URL(cluster.server),
    ca: data(cluster["certificate-authority-data"], cluster["certificate-authority"]),
    cert: data(user["client-certificate-data"], user["client-certificate"]),
    key: data(user["client-key-data"], user["client-key"]),
    ...(user.token ? { token: user.token } : {}),
  };
}

export interface ApiRelay {
  /** A kubeconfig that points kubectl at the relay. */
  kubeconfig: string;
  close(): Promise<void>;
}

/**
 * Starts the relay for a kubeconfig. `answerWithinSec` bounds each request to the API server, the TLS
 * handshake of a new connection included (asked again per request: the node's pace may change).
 */
export async function startApiRelay(kubeconfigFile: string, answerWithinSec: () => Promise<number>): Promise<ApiRelay> {
  const up = upstreamOf(fs.readFileSync(kubeconfigFile, "utf8"), path.dirname(kubeconfigFile));
  const agent = new https.Agent({ keepAlive: true, ca: up.ca, cert: up.cert, key: up.key });
  const token = randomBytes(32).toString("hex");
  const fail = (res: http.ServerResponse, code: number, message: string) => {
    if (res.headersSent) return res.destroy();
    // A Status object: kubectl prints its message as "Error from server".
    res.writeHead(code, { "content-type": "application/json" });
    res.end(JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", message, code }));
  };
  const server = http.createServer(async (req, res) => {
    const prefix = `/${token}`;
    if (!req.url || !(req.url === prefix || req.url.startsWith(`${prefix}/`) || req.url.startsWith(`${prefix}?`)))
      return fail(res, 401, "k8slab api relay: not this run's address");
    const { host: _host, ...headers } = req.headers;
    const withinSec = await answerWithinSec();
    const upstream = https.request(
      {
        agent,
        protocol: up.server.protocol,
        hostname: up.server.hostname,
        port: up.server.port,
        method: req.method,
        path: req.url.slice(prefix.length) || "/",
        headers: { ...headers, host: up.server.host, ...(up.token ? { authorization: `Bearer ${up.token}` } : {}) },
        timeout: withinSec * 1000,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("timeout", () => upstream.destroy(new Error(`${RELAY_TIMED_OUT} ${withinSec} s`)));
    upstream.on("error", (e) => fail(res, 502, e.message.startsWith(RELAY_TIMED_OUT) ? e.message : `k8slab api relay: ${e.message}`));
    req.pipe(upstream);
  });
  server.on("upgrade", (_req, socket) => socket.end("HTTP/1.1 501 Not Implemented\r\n\r\n"));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as AddressInfo;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-api-relay-"));
  const kubeconfig = path.join(dir, "kubeconfig");
  fs.writeFileSync(
    kubeconfig,
    yaml.dump({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "relay", cluster: { server: `http://127.0.0.1:${port}/${token}` } }],
      users: [{ name: "relay", user: {} }],
      contexts: [{ name: "relay", context: { cluster: "relay", user: "relay" } }],
      "current-context": "relay",
    }),
    { mode: 0o600 },
  );
  return {
    kubeconfig,
    async close() {
      fs.rmSync(dir, { recursive: true, force: true });
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      agent.destroy();
    },
  };
}

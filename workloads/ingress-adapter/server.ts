// The ingress API adapter: a reverse proxy to the API server that serves networking.k8s.io/v1beta1 Ingress and
// IngressClass out of v1, for NGINX Inc's controller v1.12.5, which asks only for v1beta1 (removed in Kubernetes 1.22).
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { pipeline } from "node:stream";
import { toV1, toV1beta1, V1, V1BETA1, v1beta1ResourceList, type WatchEvent, watchEventToV1beta1, withV1beta1Served } from "./convert.ts";
import { JsonObjectSplitter } from "./json-stream.ts";
import { type Route, routeFor } from "./routes.ts";
import { ServiceAccountToken } from "./upstream.ts";

export interface IngressAdapterArgs {
  /** Address to bind: "127.0.0.1" in the pod, which shares the node's network, so never 0.0.0.0. */
  host: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /** The API server's base URL: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT in a pod. */
  upstream: string;
  /** PEM of the CA that signed the API server's certificate; absent: Node's built-in roots. */
  upstreamCa?: string | Buffer;
  /** The service-account token file sent upstream as the bearer token; absent: the client's own Authorization goes through. */
  tokenFile?: string;
  /** How often the token file is re-read. Default 60000. */
  tokenRefreshMs?: number;
  /**
   * Serve HTTPS with this key pair instead of plain HTTP: for a controller that uses in-cluster config
   * (KUBERNETES_SERVICE_HOST=127.0.0.1) rather than -proxy. Clients must then present the pod's own
   * service-account token, so other processes on the node's loopback cannot borrow the adapter's rights.
   * Needs tokenFile.
   */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Receives one line per request: method, path, status, what the adapter did, duration. */
  log: (line: string) => void;
}

export interface RunningIngressAdapter {
  /** The port actually bound (differs from args.port when that was 0). */
  port: number;
  /** Ends open watches (their clients watch again elsewhere), stops accepting, and cuts what is left after graceMs. */
  stop(graceMs?: number): Promise<void>;
}

/** What the log line says about one request. */
interface Exchange {
  mode: "passthrough" | "v1beta1->v1" | "discovery" | "refused";
  notes: string[];
  /** Watch events relayed, for watches. */
  events?: number;
}

/** An answer the adapter gives itself, as a Kubernetes Status. */
class StatusError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

// Headers that belong to one connection, not to the request: never forwarded either way.
const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];
/** Translated requests ask for plain JSON: the adapter reads it, so no protobuf, no Table, no gzip. */
const JSON_ONLY = { accept: "application/json", "accept-encoding": undefined };
/** A Status for a PUT of an Ingress is a few KiB; etcd refuses objects over 1.5 MiB anyway. */
const MAX_REQUEST_BODY = 8 * 1024 * 1024;
const STATUS_REASONS: Record<number, string> = { 401: "Unauthorized", 413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 502: "InternalError" };
const KIND_OF: Record<string, string> = { ingresses: "Ingress", ingressclasses: "IngressClass" };

export async function startIngressAdapter(args: IngressAdapterArgs): Promise<RunningIngressAdapter> {
  const upstream = new URL(args.upstream);
  const secure = upstream.protocol === "https:";
  const transport = secure ? https : http;
  // Keep-alive: the controller's informers re-list and re-watch all day; new TLS handshakes each time would be waste.
  const agent = secure ? new https.Agent({ keepAlive: true, ca: args.upstreamCa }) : new http.Agent({ keepAlive: true });
  const basePath = upstream.pathname.replace(/\/$/, "");
  if (args.tls && !args.tokenFile) throw new Error("serving TLS needs tokenFile: clients are checked against the pod's token");
  const token = args.tokenFile ? new ServiceAccountToken(args.tokenFile, args.tokenRefreshMs ?? 60_000, args.log) : undefined;
  const watches = new Set<http.ServerResponse>();

  async function onRequest(req: http.IncomingMessage, res: http.ServerResponse) {
    const started = performance.now();
    const exchange: Exchange = { mode: "passthrough", notes: [] };
    let upstreamRequest: http.ClientRequest | undefined;
    res.on("close", () => {
      // Closed before the answer was complete: the client went away, so the API server's side goes too.
      if (!res.writableFinished) {
        exchange.notes.push("client gone");
        upstreamRequest?.destroy();
      }
      const events = exchange.events === undefined ? [] : [`events=${exchange.events}`];
      args.log(`${req.method} ${req.url} ${res.statusCode} ${[exchange.mode, ...events, ...exchange.notes].join(" ")} ${msSince(started)}ms`);
    });
    try {
      await handle(req, res, exchange, (r) => (upstreamRequest = r));
    } catch (err) {
      const { code, message } =
        err instanceof StatusError ? err : { code: 502, message: `ingress-adapter: API server ${args.upstream}: ${(err as Error).message}` };
      exchange.notes.push(`error: ${(err as Error).message}`);
      sendStatus(res, code, message);
    }
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, exchange: Exchange, track: (r: http.ClientRequest) => void) {
    if (args.tls && !token!.accepts(bearerOf(req))) {
      exchange.mode = "refused";
      return sendStatus(res, 401, "ingress-adapter: present this pod's service-account token");
    }
    const url = new URL(req.url ?? "/", "http://ingress-adapter.invalid");
    const route = routeFor(req.method ?? "GET", url.pathname, url.searchParams);
    switch (route.kind) {
      case "pass": {
        const up = await send(req, url.pathname + url.search, {}, hasBody(req) ? req : undefined, track);
        res.writeHead(up.statusCode ?? 502, headersWithout(up.rawHeaders, HOP_BY_HOP));
        // Byte for byte, as it arrives: watches of Endpoints, Services, Secrets... stream through here too.
        pipeline(up, res, () => {});
        return;
      }
      case "translate": {
        exchange.mode = "v1beta1->v1";
        const body = hasBody(req) ? requestBodyToV1(await readAll(req, MAX_REQUEST_BODY), req.headers["content-type"], route) : undefined;
        const up = await send(req, route.upstreamPath + url.search, JSON_ONLY, body, track);
        if (route.watch && up.statusCode === 200) return relayWatch(up, res, exchange);
        return answerConverted(up, res, toV1beta1);
      }
      case "resource-list": {
        exchange.mode = "discovery";
        const up = await send(req, "/apis/networking.k8s.io/v1", JSON_ONLY, undefined, track);
        return answerConverted(up, res, v1beta1ResourceList);
      }
      case "group-discovery": {
        exchange.mode = "discovery";
        // Plain JSON asks for the legacy discovery format (APIGroupList), which has room for one more version.
        const up = await send(req, url.pathname + url.search, JSON_ONLY, undefined, track);
        return answerConverted(up, res, withV1beta1Served);
      }
    }
  }

  /** Sends the request on to the API server at `path`; resolves with its answer once the headers are in. */
  function send(
    req: http.IncomingMessage,
    path: string,
    overrides: Record<string, string | undefined>,
    body: Buffer | http.IncomingMessage | undefined,
    track: (r: http.ClientRequest) => void,
  ): Promise<http.IncomingMessage> {
    const headers = upstreamHeaders(req.headers, overrides, body);
    const attempt = () =>
      new Promise<http.IncomingMessage>((resolve, reject) => {
        const r = transport.request(
          { hostname: upstream.hostname.replace(/^\[|\]$/g, ""), port: upstream.port, method: req.method, path: basePath + path, headers, agent },
          resolve,
        );
        track(r);
        // `on`, not `once`: a second error after the answer began must not go unhandled and end the process.
        r.on("error", (err) => reject(Object.assign(err, { reusedSocket: r.reusedSocket })));
        if (Buffer.isBuffer(body)) r.end(body);
        else if (body) body.pipe(r);
        else r.end();
      });
    return attempt().catch((err) => {
      // A kept-alive connection the API server closed just as it was reused: try once more on a new one,
      // when the body can be sent again (it cannot when it was streamed from the client).
      if (err.reusedSocket && err.code === "ECONNRESET" && !(body instanceof http.IncomingMessage)) return attempt();
      throw err;
    });
  }

  function upstreamHeaders(incoming: http.IncomingHttpHeaders, overrides: Record<string, string | undefined>, body: unknown): http.OutgoingHttpHeaders {
    const dropped = new Set([...HOP_BY_HOP, "host", ...listedIn(incoming.connection)]);
    const out: http.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(incoming)) if (value !== undefined && !dropped.has(name)) out[name] = value;
    // The controller sends no credentials through -proxy; with TLS it sends this same pod's token.
    if (token?.value) out.authorization = `Bearer ${token.value}`;
    for (const [name, value] of Object.entries(overrides)) {
      if (value === undefined) delete out[name];
      else out[name] = value;
    }
    if (Buffer.isBuffer(body)) out["content-length"] = String(body.length);
    return out;
  }

  /** Streams a v1 watch back as v1beta1, one event as soon as it is complete, until either side ends. */
  function relayWatch(up: http.IncomingMessage, res: http.ServerResponse, exchange: Exchange) {
    // Connection: close, so the socket goes with the watch and stop() need not wait for it to idle out.
    res.writeHead(200, [...headersWithout(up.rawHeaders, [...HOP_BY_HOP, "content-length", "content-encoding"]), "connection", "close"]);
    res.flushHeaders();
    watches.add(res);
    exchange.events = 0;
    const splitter = new JsonObjectSplitter();
    let paused = false;
    const end = (note?: string) => {
      if (note && !res.writableEnded) exchange.notes.push(note);
      if (!res.writableEnded) res.end(); // a clean end: client-go simply watches again from its last resourceVersion
      up.destroy();
    };
    up.on("data", (chunk: Buffer) => {
      let texts: string[];
      try {
        texts = splitter.push(chunk);
      } catch (err) {
        return end(`bad watch stream: ${(err as Error).message}`);
      }
      for (const text of texts) {
        let event: WatchEvent;
        try {
          event = JSON.parse(text);
        } catch {
          return end("bad watch event: not JSON");
        }
        exchange.events!++;
        const writable = res.write(`${JSON.stringify(watchEventToV1beta1(event))}\n`);
        if (!writable && !paused) {
          paused = true;
          up.pause();
          res.once("drain", () => {
            paused = false;
            up.resume();
          });
        }
      }
    });
    up.on("end", () => end(splitter.midObject ? "watch cut mid-event" : undefined));
    up.on("error", (err) => end(`watch broke: ${err.message}`));
    up.on("close", () => end());
    res.on("close", () => {
      watches.delete(res);
      up.destroy();
    });
  }

  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void onRequest(req, res);
  // Longer than client-go's idle connection timeout (90 s), so the client closes idle connections, not the
  // adapter: the other way round, a request may go out on a connection just as it closes.
  const options = { keepAliveTimeout: 120_000 };
  const server = args.tls ? https.createServer({ ...options, cert: args.tls.cert, key: args.tls.key }, handler) : http.createServer(options, handler);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(args.port, args.host, resolve);
  });

  return {
    port: (server.address() as AddressInfo).port,
    stop(graceMs = 5000) {
      token?.stop();
      for (const watch of watches) watch.end();
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), graceMs);
        server.close(() => {
          clearTimeout(force);
          agent.destroy();
          resolve();
        });
        server.closeIdleConnections();
      });
    },
  };
}

/** The upstream's answer, read whole, converted, and sent as JSON; a body that is not JSON becomes a 502. */
async function answerConverted(up: http.IncomingMessage, res: http.ServerResponse, convert: (object: unknown) => unknown) {
  const raw = await readAll(up);
  const status = up.statusCode ?? 502;
  const headers = headersWithout(up.rawHeaders, [...HOP_BY_HOP, "content-length", "content-encoding", "content-type"]);
  if (raw.length === 0) {
    res.writeHead(status, [...headers, "content-length", "0"]);
    return res.end();
  }
  let object: unknown;
  try {
    object = JSON.parse(raw.toString("utf8"));
  } catch {
    const what = `${status} ${up.headers["content-type"] ?? "(no content type)"}`;
    throw new StatusError(502, `ingress-adapter: the API server answered ${what} that is not JSON: ${JSON.stringify(raw.toString("utf8", 0, 200))}`);
  }
  const body = Buffer.from(JSON.stringify(convert(object)));
  res.writeHead(status, [...headers, "content-type", "application/json", "content-length", String(body.length)]);
  res.end(body);
}

/**
 * A whole object sent to a v1beta1 path (the PUT of ingresses/status), as v1. Patches and bodies that are
 * not JSON go as they are: only whole objects have a version. A body that does not parse goes as it is too,
 * and the API server says what is wrong with it.
 */
function requestBodyToV1(body: Buffer, contentType: string | undefined, route: Extract<Route, { kind: "translate" }>): Buffer {
  // client-go v0.23 (the controller's) sends JSON; newer clientsets default to protobuf, which has no field names to map.
  if (/^application\/vnd\.kubernetes\.protobuf\b/i.test(contentType ?? "")) {
    throw new StatusError(415, "ingress-adapter: a v1beta1 body must be JSON to be converted; set the client's ContentType to application/json");
  }
  if (!contentType || !/^application\/json\b/i.test(contentType) || body.length === 0) return body;
  let object: unknown;
  try {
    object = JSON.parse(body.toString("utf8"));
  } catch {
    return body;
  }
  if (typeof object !== "object" || object === null || Array.isArray(object)) return body;
  let typed = object as { apiVersion?: string; kind?: string };
  const kind = KIND_OF[route.resource];
  // The API server would read a body without apiVersion as the version in the URL, which is now v1.
  if (typed.apiVersion === undefined && (typed.kind === undefined || typed.kind === kind)) typed = { apiVersion: V1BETA1, kind, ...typed };
  let converted = toV1(typed);
  // DeleteOptions and the like, encoded by the client for v1beta1: the same object under v1.
  if (converted.apiVersion === V1BETA1) converted = { ...converted, apiVersion: V1 };
  return Buffer.from(JSON.stringify(converted));
}

function sendStatus(res: http.ServerResponse, code: number, message: string) {
  // Too late for a status once the answer has begun: cutting the connection is all that is left to say.
  if (res.headersSent || res.destroyed) return void res.destroy();
  const body = JSON.stringify({
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason: STATUS_REASONS[code] ?? "InternalError",
    code,
  });
  res.writeHead(code, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

async function readAll(stream: http.IncomingMessage, limit = Infinity): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new StatusError(413, `ingress-adapter: request body over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function hasBody(req: http.IncomingMessage): boolean {
  return req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? 0) > 0;
}

function bearerOf(req: http.IncomingMessage): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "")?.[1];
}

/** Raw headers (flat name, value, name, value...) less the named ones and those the Connection header lists. */
function headersWithout(raw: string[], names: string[]): string[] {
  const connection = raw.flatMap((v, i) => (i % 2 === 0 && v.toLowerCase() === "connection" ? listedIn(raw[i + 1]) : []));
  const dropped = new Set([...names, ...connection]);
  return raw.flatMap((v, i) => (i % 2 === 0 && !dropped.has(v.toLowerCase()) ? [v, raw[i + 1]] : []));
}

function listedIn(connectionHeader: string | undefined): string[] {
  return (connectionHeader ?? "")
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s && s !== "close" && s !== "keep-alive");
}

function msSince(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}

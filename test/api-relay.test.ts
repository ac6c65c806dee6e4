// The probes' API relay against a real TLS server that wants a client certificate, as kube-apiserver does:
// requests and bodies relayed under the run's secret prefix only, TLS connections reused, a slow answer cut
// off with words live.ts counts as "too slow", nothing left after close().
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import yaml from "js-yaml";
import { CA } from "../core/node.ts";
import { createCa, issueCertificate } from "../scripts/pki/generate.ts";
import { RELAY_TIMED_OUT, startApiRelay, upstreamOf } from "../scripts/probes/api-relay.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** GET or POST through the relay, as kubectl would with the relay's kubeconfig. */
function request(url: string, method = "GET", body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method }, (res) => {
      let text = "";
      res.on("data", (d) => {
        text += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("the API relay", () => {
  let server: https.Server;
  let dir: string;
  let kubeconfig: string;
  let handshakes = 0;
  const seen: { method?: string; url?: string; body: string; clientCN?: string }[] = [];

  before(async () => {
    const ca = await createCa("test-ca");
    const serverCert = await issueCertificate(ca, {
      name: "apiserver",
      commonName: "apiserver",
      ca: CA.kubernetes,
      dns: [],
      ips: ["127.0.0.1"],
      usages: ["server"],
    });
    const client = await issueCertificate(ca, {
      name: "admin",
      commonName: "admin",
      ca: CA.kubernetes,
      organization: "system:masters",
      dns: [],
      ips: [],
      usages: ["client"],
    });
    server = https.createServer(
      { cert: serverCert.certPem, key: serverCert.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true },
      (req, res) => {
        let body = "";
        req.on("data", (d) => {
          body += d;
        });
        req.on("end", () => {
          const peer = (req.socket as import("node:tls").TLSSocket).getPeerCertificate();
          seen.push({ method: req.method, url: req.url, body, clientCN: peer.subject?.CN });
          const slow = req.url?.startsWith("/slow");
          setTimeout(() => res.end(JSON.stringify({ kind: "Answer", url: req.url })), slow ? 3000 : 0);
        });
      },
    );
    server.on("secureConnection", () => handshakes++);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as import("node:net").AddressInfo;
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-relay-test-"));
    kubeconfig = path.join(dir, "admin.kubeconfig");
    fs.writeFileSync(
      kubeconfig,
      yaml.dump({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "lab", cluster: { server: `https://127.0.0.1:${port}`, "certificate-authority-data": b64(ca.certPem) } }],
        users: [{ name: "admin", user: { "client-certificate-data": b64(client.certPem), "client-key-data": b64(client.keyPem) } }],
        contexts: [{ name: "admin@lab", context: { cluster: "lab", user: "admin" } }],
        "current-context": "admin@lab",
      }),
    );
  });
  after(() => {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("relays requests and their bodies with the kubeconfig's client certificate, over one TLS connection", async () => {
    const relay = await startApiRelay(kubeconfig, async () => 30);
    try {
      const mode = fs.statSync(relay.kubeconfig).mode & 0o777;
      assert.equal(mode, 0o600);
      const base = upstreamOf(fs.readFileSync(relay.kubeconfig, "utf8")).server.href;
      assert.match(base, /^http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{64}$/);
      handshakes = 0;
      seen.length = 0;
      const a = await request(`${base}/api/v1/pods?limit=500`);
      assert.equal(a.status, 200);
      assert.deepEqual(JSON.parse(a.body), { kind: "Answer", url: "/api/v1/pods?limit=500" });
      const b = await request(`${base}/api/v1/namespaces`, "POST", '{"kind":"Namespace"}');
      assert.equal(b.status, 200);
      assert.deepEqual(
        seen.map((s) => [s.method, s.url, s.body, s.clientCN]),
        [
          ["GET", "/api/v1/pods?limit=500", "", "admin"],
          ["POST", "/api/v1/namespaces", '{"kind":"Namespace"}', "admin"],
        ],
      );
      assert.equal(handshakes, 1, "the second request reused the first one's TLS connection");
    } finally {
      await relay.close();
    }
    assert.equal(fs.existsSync(path.dirname(relay.kubeconfig)), false, "its kubeconfig is gone after close()");
  });

  it("answers nothing outside the run's secret prefix, and cuts off an API server that does not answer in time", async () => {
    const relay = await startApiRelay(kubeconfig, async () => 1);
    try {
      const base = new URL(upstreamOf(fs.readFileSync(relay.kubeconfig, "utf8")).server.href);
      seen.length = 0;
      const other = await request(`${base.origin}/api/v1/secrets`);
      assert.equal(other.status, 401);
      const guessed = await request(`${base.origin}/${"0".repeat(64)}/api/v1/secrets`);
      assert.equal(guessed.status, 401);
      assert.deepEqual(seen, [], "nothing reached the API server");
      const slow = await request(`${base.href}/slow`);
      assert.equal(slow.status, 502);
      assert.equal(JSON.parse(slow.body).kind, "Status");
      assert.match(JSON.parse(slow.body).message, new RegExp(`^${RELAY_TIMED_OUT} 1 s$`));
    } finally {
      await relay.close();
    }
  });

  it("reads the current context's server and credentials, inline or from files beside the kubeconfig", () => {
    fs.writeFileSync(path.join(dir, "ca.crt"), "CA");
    const text = yaml.dump({
      clusters: [
        { name: "other", cluster: { server: "https://10.0.0.1:6443" } },
        { name: "lab", cluster: { server: "https://127.0.0.1:16443", "certificate-authority": "ca.crt" } },
      ],
      users: [{ name: "admin", user: { "client-certificate-data": b64("CERT"), "client-key-data": b64("KEY") } }],
      contexts: [{ name: "admin@lab", context: { cluster: "lab", user: "admin" } }],
      "current-context": "admin@lab",
    });
    const up = upstreamOf(text, dir);
    assert.equal(up.server.href, "https://127.0.0.1:16443/");
    assert.deepEqual([up.ca?.toString(), up.cert?.toString(), up.key?.toString()], ["CA", "CERT", "KEY"]);
    assert.throws(() => upstreamOf("contexts: []\n"), /names no server/);
  });
});

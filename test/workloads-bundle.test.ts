// The bundled workloads run on a bare `node`, from a directory with no node_modules, and talk to each other.

import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";

const root = path.join(import.meta.dirname, "..");
const outDir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-workloads-"));
const children: ChildProcessWithoutNullStreams[] = [];

after(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, "SIGKILL");
  fs.rmSync(outDir, { recursive: true, force: true });
});

/** Starts a bundle the way the image will: `node app.mjs`, configured by environment alone. */
function runBundle(app: string, env: Record<string, string>) {
  const child = spawn(process.execPath, [path.join(outDir, `${app}.mjs`)], {
    cwd: outDir,
    // No inherited NODE_PATH or NODE_OPTIONS: nothing outside the bundle may be found.
    env: { PATH: process.env.PATH ?? "", LISTEN_HOST: "127.0.0.1", PORT: "0", ...env },
  });
  children.push(child);
  let output = "";
  child.stdout.on("data", (chunk) => (output += chunk));
  child.stderr.on("data", (chunk) => (output += chunk));
  const listening = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${app} did not start within 5 s:\n${output}`)), 5000);
    child.stdout.on("data", () => {
      const port = /listening on 127\.0\.0\.1:(\d+)/.exec(output)?.[1];
      if (port) {
        clearTimeout(timer);
        resolve(Number(port));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${app} exited with ${code}:\n${output}`));
    });
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, listening, exited, output: () => output };
}

test("build bundles both workloads and reports their sha256", () => {
  const r = spawnSync(process.execPath, ["--import", "tsx", "workloads/build.ts", outDir], { cwd: root, encoding: "utf8", timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  const sums = fs.readFileSync(path.join(outDir, "SHA256SUMS"), "utf8");
  for (const app of ["data-product", "business-manager"]) {
    const file = path.join(outDir, `${app}.mjs`);
    const sha256 = crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
    assert.ok(r.stdout.includes(`${file}  sha256:${sha256}`), r.stdout);
    assert.ok(sums.includes(`${sha256}  ${app}.mjs\n`), sums);
  }
});

test("the bundles serve a request end to end and stop on SIGTERM", async () => {
  assert.ok(fs.existsSync(path.join(outDir, "data-product.mjs")), "the build test ran first");
  const dataProduct = runBundle("data-product", { POD_NAME: "data-product-0", POD_IP: "172.30.2.9", NODE_NAME: "node2" });
  const dataProductPort = await dataProduct.listening;
  const businessManager = runBundle("business-manager", {
    POD_NAME: "business-manager-0",
    POD_IP: "172.30.1.9",
    NODE_NAME: "node1",
    DATA_PRODUCT_ADDR: `127.0.0.1:${dataProductPort}`,
  });
  const businessManagerPort = await businessManager.listening;

  const res = await fetch(`http://127.0.0.1:${businessManagerPort}/products/2`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as any;
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.deepEqual(body.businessManager, { pod: "business-manager-0", ip: "172.30.1.9", node: "node1" });
  assert.deepEqual(body.dataProduct, { pod: "data-product-0", ip: "172.30.2.9", node: "node2" });
  assert.equal(body.product.id, "2");

  for (const { child } of [businessManager, dataProduct]) process.kill(child.pid!, "SIGTERM");
  assert.equal(await businessManager.exited, 0, businessManager.output());
  assert.equal(await dataProduct.exited, 0, dataProduct.output());
  assert.match(businessManager.output(), /^GET \/products\/2 200 [\d.]+ms$/m);
  assert.match(businessManager.output(), /business-manager: stopped/);
  assert.match(dataProduct.output(), /data-product: stopped/);
});

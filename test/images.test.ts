// The OCI archive builder on a tiny tree: layout, digests, diff_ids, names, byte-identical rebuilds, cache keys,
// and what the catalog asks for. No root, no network.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { gunzipSync } from "node:zlib";
import { ensureImages, imageKey, layerKey } from "../scripts/images/build.ts";
import { imageCatalog, REGISTRY, TOOLBOX_PACKAGES } from "../scripts/images/catalog.ts";
import { buildOciArchive, type Compression, IMAGE_NAME_ANNOTATION, MEDIA, REF_NAME_ANNOTATION, type RunConfig } from "../scripts/images/oci.ts";
import { type LayerSpec, stageTree } from "../scripts/images/rootfs.ts";
import { parseManifest } from "../scripts/toolchain/manifest.ts";
import { manifestFile } from "../scripts/toolchain/paths.ts";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-images-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
const ref = { name: `${REGISTRY}/hello`, tag: "v0.0.1" };
const run: RunConfig = {
  entrypoint: ["/bin/hello"],
  cmd: ["--loud"],
  env: ["PATH=/bin"],
  workingDir: "/",
  exposedPorts: ["8080/tcp", "53/udp"],
  user: "65535:65535",
};

/** A tree like a tiny image: an executable, a config file, an empty directory and a symlink. */
function makeTree(dir: string, greeting = "hello\n") {
  fs.mkdirSync(path.join(dir, "bin"), { recursive: true });
  fs.mkdirSync(path.join(dir, "etc/empty"), { recursive: true });
  fs.writeFileSync(path.join(dir, "bin/hello"), "#!/bin/sh\necho hi\n");
  fs.chmodSync(path.join(dir, "bin/hello"), 0o755); // whatever the umask
  fs.writeFileSync(path.join(dir, "etc/greeting"), greeting);
  fs.symlinkSync("/etc/greeting", path.join(dir, "greeting"));
  return dir;
}

async function build(name: string, compression: Compression = "gzip", trees = [makeTree(path.join(tmp, `${name}-tree`))]) {
  return buildOciArchive({ trees, ref, run, compression, archive: path.join(tmp, `${name}.oci.tar`) });
}

/** Untar an archive and follow index.json -> manifest -> config and layers, checking every descriptor against its blob. */
function openLayout(archive: string) {
  const dir = fs.mkdtempSync(path.join(tmp, "x-"));
  execFileSync("tar", ["-xf", archive, "-C", dir]);
  const blob = (d: { digest: string; size: number; mediaType: string }) => {
    const bytes = fs.readFileSync(path.join(dir, "blobs/sha256", d.digest.replace("sha256:", "")));
    assert.equal(`sha256:${sha256(bytes)}`, d.digest, `digest of ${d.mediaType}`);
    assert.equal(bytes.length, d.size, `size of ${d.mediaType}`);
    return bytes;
  };
  const index = JSON.parse(fs.readFileSync(path.join(dir, "index.json"), "utf8"));
  const manifest = JSON.parse(blob(index.manifests[0]).toString());
  const config = JSON.parse(blob(manifest.config).toString());
  const layers = manifest.layers.map(blob) as Buffer[];
  return { dir, entries: execFileSync("tar", ["-tf", archive], { encoding: "utf8" }).trim().split("\n"), index, manifest, config, layers };
}

describe("OCI archive", () => {
  it("is an image layout whose index, manifest, config and layers agree", async () => {
    const a = await build("one");
    const { entries, index, manifest, config, layers, dir } = openLayout(a.archive);
    const blobs = entries.filter((e) => /^blobs\/sha256\/[0-9a-f]{64}$/.test(e));
    assert.equal(blobs.length, 3, "layer, config, manifest");
    assert.deepEqual(
      entries.filter((e) => !blobs.includes(e)),
      ["blobs/", "blobs/sha256/", "index.json", "oci-layout"],
    );
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, "oci-layout"), "utf8")), { imageLayoutVersion: "1.0.0" });
    assert.equal(index.schemaVersion, 2);
    assert.equal(index.manifests.length, 1);
    assert.equal(index.manifests[0].mediaType, MEDIA.manifest);
    assert.equal(index.manifests[0].annotations[IMAGE_NAME_ANNOTATION], "k8slab.local/hello:v0.0.1");
    assert.equal(index.manifests[0].annotations[REF_NAME_ANNOTATION], "v0.0.1");
    assert.deepEqual(index.manifests[0].platform, { architecture: "amd64", os: "linux" });
    assert.equal(manifest.config.mediaType, MEDIA.config);
    assert.equal(manifest.layers[0].mediaType, MEDIA.layerGzip);
    assert.equal(config.architecture, "amd64");
    assert.equal(config.os, "linux");
    assert.deepEqual(config.config.Entrypoint, ["/bin/hello"]);
    assert.deepEqual(config.config.Cmd, ["--loud"]);
    assert.deepEqual(Object.keys(config.config.ExposedPorts), ["53/udp", "8080/tcp"]);
    assert.equal(config.config.User, "65535:65535");
    // diff_ids name the uncompressed layer: containerd checks them when it unpacks.
    assert.deepEqual(config.rootfs, { type: "layers", diff_ids: [`sha256:${sha256(gunzipSync(layers[0]))}`] });
    assert.equal(a.manifestDigest, index.manifests[0].digest);
    assert.equal(a.sha256, sha256(fs.readFileSync(a.archive)));
  });

  it("has a layer of sorted, root-owned entries with time 0 that keeps modes and links", async () => {
    const a = await build("layer", "none");
    const { layers, manifest, config } = openLayout(a.archive);
    assert.equal(manifest.layers[0].mediaType, MEDIA.layer);
    assert.equal(config.rootfs.diff_ids[0], manifest.layers[0].digest, "uncompressed: diff_id is the blob digest");
    const layerFile = path.join(tmp, "layer.tar");
    fs.writeFileSync(layerFile, layers[0]);
    const listing = execFileSync("tar", ["-tvf", layerFile, "--numeric-owner", "--full-time"], { encoding: "utf8" }).trim().split("\n");
    const names = listing.map((l) => l.split(/\s+/).slice(5).join(" "));
    assert.deepEqual(names, ["bin/", "bin/hello", "etc/", "etc/empty/", "etc/greeting", "greeting -> /etc/greeting"]);
    for (const l of listing) assert.match(l, /^\S+ 0\/0 +\d+ 1970-01-01 00:00:00 /, l);
    assert.match(listing[1], /^-rwxr-xr-x /);
  });

  it("is byte-identical when built twice from the same inputs, and differs when a file does", async () => {
    const a = await build("twice-a");
    const b = await build("twice-b");
    assert.equal(a.sha256, b.sha256);
    assert.ok(fs.readFileSync(a.archive).equals(fs.readFileSync(b.archive)));
    const c = await build("twice-c", "gzip", [makeTree(path.join(tmp, "changed-tree"), "bonjour\n")]);
    assert.notEqual(c.sha256, a.sha256);
  });

  it("stacks several trees as layers, bottom first", async () => {
    const top = path.join(tmp, "top");
    fs.mkdirSync(path.join(top, "app"), { recursive: true });
    fs.writeFileSync(path.join(top, "app/main.js"), "console.log(1)\n");
    const a = await build("stack", "gzip", [makeTree(path.join(tmp, "stack-base")), top]);
    const { manifest, config, layers } = openLayout(a.archive);
    assert.equal(manifest.layers.length, 2);
    assert.deepEqual(
      config.rootfs.diff_ids,
      layers.map((l) => `sha256:${sha256(gunzipSync(l))}`),
    );
    assert.equal(config.history.length, 2);
  });
});

describe("layer trees", () => {
  it("places files, directories, symlinks and sourced files with their modes, and a prepended line", async () => {
    const src = path.join(tmp, "src.tmpl");
    fs.writeFileSync(src, "worker_processes 1;\n", { mode: 0o600 });
    const root = path.join(tmp, "staged");
    const spec: LayerSpec = {
      name: "files",
      files: [
        { path: "etc/nsswitch.conf", text: "hosts: files dns\n" },
        { path: "var/lib/nginx", dir: true },
        { path: "nginx.tmpl", from: { repo: "x" }, prepend: "include m/*.conf;\n" },
        { path: "usr/local/bin/tool", from: { repo: "x" }, mode: 0o755 },
        { path: "link", symlink: "/usr/local/bin/tool" },
      ],
    };
    await stageTree(
      spec,
      root,
      () => src,
      () => {},
    );
    const mode = (p: string) => fs.lstatSync(path.join(root, p)).mode & 0o7777;
    assert.equal(fs.readFileSync(path.join(root, "nginx.tmpl"), "utf8"), "include m/*.conf;\nworker_processes 1;\n");
    assert.equal(mode("nginx.tmpl"), 0o600, "a sourced file keeps its mode unless one is given");
    assert.equal(mode("usr/local/bin/tool"), 0o755);
    assert.equal(mode("usr/local"), 0o755, "parents made for a file are 0755 whatever the umask");
    assert.equal(mode("etc/nsswitch.conf"), 0o644);
    assert.ok(fs.statSync(path.join(root, "var/lib/nginx")).isDirectory());
    assert.equal(fs.readlinkSync(path.join(root, "link")), "/usr/local/bin/tool");
    await assert.rejects(
      stageTree(
        { name: "bad", files: [{ path: "../escape", text: "" }] },
        path.join(tmp, "bad"),
        () => src,
        () => {},
      ),
      /outside the tree/,
    );
  });
});

describe("cache keys", () => {
  const shas: Record<string, string> = { a: "a".repeat(64) };
  const layer: LayerSpec = { name: "app", files: [{ path: "app/x", from: { repo: "x" } }] };
  const of = () => shas.a;
  const spec = { name: "hello", layers: [layer], run };

  it("of a layer change with a file sha256, the package list and the builder, and only then", () => {
    const k = layerKey(layer, of, "builder1");
    assert.equal(layerKey(structuredClone(layer), of, "builder1"), k);
    assert.notEqual(
      layerKey(layer, () => "b".repeat(64), "builder1"),
      k,
    );
    assert.notEqual(layerKey(layer, of, "builder2"), k);
    assert.notEqual(layerKey({ ...layer, files: [{ path: "app/x", from: { repo: "x" }, mode: 0o755 }] }, of, "builder1"), k);
    const deb: LayerSpec = { name: "rootfs", debian: { packages: ["curl"] } };
    assert.notEqual(layerKey(deb, of, "b"), layerKey({ ...deb, debian: { packages: ["curl", "iperf3"] } }, of, "b"));
  });

  it("of an image change with a layer key and with its run config", () => {
    const k = imageKey(spec, ["k1"]);
    assert.equal(imageKey(structuredClone(spec), ["k1"]), k);
    assert.notEqual(imageKey(spec, ["k2"]), k);
    assert.notEqual(imageKey({ ...spec, run: { ...run, cmd: ["--quiet"] } }, ["k1"]), k);
    assert.notEqual(imageKey({ ...spec, tag: "v2" }, ["k1"]), k);
  });
});

describe("catalog", () => {
  const catalog = imageCatalog(parseManifest(fs.readFileSync(manifestFile, "utf8")));
  const byName = Object.fromEntries(catalog.map((c) => [c.name, c]));

  it("has the images the lab runs, pinned ones tagged with their toolchain version", () => {
    assert.deepEqual(catalog.map((c) => c.name).sort(), [
      "business-manager",
      "coredns",
      "data-product",
      "ingress-adapter",
      "nginx-ingress",
      "pause",
      "toolbox",
    ]);
    assert.equal(byName.pause.tag, "v1.0.0");
    assert.deepEqual(byName.pause.run.entrypoint, ["/pause"]);
    assert.deepEqual(byName.coredns.run.exposedPorts, ["53/tcp", "53/udp"]);
    for (const p of ["curl", "bind9-dnsutils", "iperf3", "tcpdump"]) assert.ok(TOOLBOX_PACKAGES.includes(p), p);
  });

  it("puts the ingress templates in the controller working directory and shares the Node runtime layer", () => {
    const files = byName["nginx-ingress"].layers[1].files!.map((f) => f.path);
    assert.ok(files.includes("nginx.tmpl") && files.includes("nginx.ingress.tmpl"), files.join(" "));
    assert.equal(byName["nginx-ingress"].run.workingDir, "/");
    assert.deepEqual(byName["business-manager"].layers[0], byName["data-product"].layers[0]);
    assert.deepEqual(byName["data-product"].run.entrypoint, ["/usr/local/bin/node", "/app/data-product.mjs"]);
  });
});

describe("ensureImages", () => {
  it("skips an image whose bundle artifact is not built, naming the artifact", async () => {
    const saved = process.env.K8SLAB_CACHE;
    process.env.K8SLAB_CACHE = path.join(tmp, "cache");
    try {
      const lines: string[] = [];
      const r = await ensureImages({ only: ["coredns"], log: (s) => lines.push(s) });
      assert.deepEqual(r.images, []);
      assert.equal(r.skipped.length, 1);
      assert.match(r.skipped[0].reason, /bundle artifact "coredns" \(bin\/coredns\) is not built yet/);
      assert.match(lines.join("\n"), /coredns: skipped/);
      await assert.rejects(ensureImages({ only: ["nope"], log: () => {} }), /unknown image nope/);
    } finally {
      if (saved === undefined) delete process.env.K8SLAB_CACHE;
      else process.env.K8SLAB_CACHE = saved;
    }
  });
});

// Turns directory trees into a deterministic OCI image layout archive that `ctr -n k8s.io images import` loads.
// Same trees and config in, same bytes out: every tar is written with fixed order, times and owners, gzip without a name or time.
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { $ } from "zx";
import { sha256File } from "../files.ts";

export type Compression = "gzip" | "none";
export type Digest = `sha256:${string}`;

export const MEDIA = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar",
  layerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

/** containerd names an imported image after this annotation (ctr import ignores a bare ref.name tag). */
export const IMAGE_NAME_ANNOTATION = "io.containerd.image.name";
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";
/** Every timestamp in an image: builds must not depend on the clock. */
export const EPOCH = "1970-01-01T00:00:00Z";

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
}

/** A layer blob on disk: the (maybe compressed) tar, its descriptor, and the digest of the uncompressed tar. */
export interface LayerBlob extends Descriptor {
  file: string;
  diffId: Digest;
  /** Shown in the config's history (e.g. "debian trixie + nginx"). */
  comment?: string;
}

/** What the runtime needs to start the image; the OCI config's `config` object. */
export interface RunConfig {
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  /** "53/udp", "80/tcp". */
  exposedPorts?: string[];
  /** "0", "65535:65535", "101". */
  user?: string;
  stopSignal?: string;
  labels?: Record<string, string>;
}

/** An image reference split the way the layout stores it: name "k8slab.local/pause", tag "v1.0.0". */
export interface ImageRef {
  name: string;
  tag: string;
}

export const refString = (r: ImageRef) => `${r.name}:${r.tag}`;

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

/**
 * Deterministic tar of everything in dir (not dir itself): GNU format, names sorted, mtime 0,
 * root-owned, no xattrs/ACLs, so only names, modes, links and contents matter.
 */
export async function tarTree(dir: string, outFile: string): Promise<void> {
  // Top-level names sorted here (tar --sort=name orders inside directories only); an empty tree is an empty tar.
  const top = fs.readdirSync(dir).sort();
  const members = top.length ? ["--", ...top] : ["--files-from=/dev/null"];
  await $`tar --create --file=${outFile} --directory=${dir} --format=gnu --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --no-acls --no-xattrs --no-selinux ${members}`.quiet();
}

/** Tar dir into a layer blob named by its digest inside blobsDir (blobs/sha256). */
export async function buildLayer(dir: string, blobsDir: string, compression: Compression = "gzip", comment?: string): Promise<LayerBlob> {
  fs.mkdirSync(blobsDir, { recursive: true });
  const tmp = path.join(blobsDir, `.layer-${process.pid}-${Date.now()}.tar`);
  try {
    await tarTree(dir, tmp);
    const diffId: Digest = `sha256:${await sha256File(tmp)}`;
    let blob = tmp;
    if (compression === "gzip") {
      // -n: no file name or time in the gzip header; the level is gzip's default, fixed.
      await $`gzip -n -f ${tmp}`.quiet();
      blob = `${tmp}.gz`;
    }
    const hex = await sha256File(blob);
    const file = path.join(blobsDir, hex);
    fs.renameSync(blob, file);
    fs.chmodSync(file, 0o644);
    const mediaType = compression === "gzip" ? MEDIA.layerGzip : MEDIA.layer;
    return { mediaType, digest: `sha256:${hex}`, size: fs.statSync(file).size, file, diffId, ...(comment ? { comment } : {}) };
  } finally {
    fs.rmSync(tmp, { force: true });
    fs.rmSync(`${tmp}.gz`, { force: true });
  }
}

/** The OCI image config: platform, run settings, and the diff_ids that tie it to the layers. */
export function imageConfig(run: RunConfig, layers: LayerBlob[]): string {
  const config: Record<string, unknown> = {};
  if (run.user !== undefined) config.User = run.user;
  if (run.exposedPorts?.length) config.ExposedPorts = Object.fromEntries([...run.exposedPorts].sort().map((p) => [p, {}]));
  if (run.env?.length) config.Env = run.env;
  if (run.entrypoint) config.Entrypoint = run.entrypoint;
  if (run.cmd) config.Cmd = run.cmd;
  if (run.workingDir) config.WorkingDir = run.workingDir;
  if (run.labels && Object.keys(run.labels).length) config.Labels = Object.fromEntries(Object.entries(run.labels).sort());
  if (run.stopSignal) config.StopSignal = run.stopSignal;
  return JSON.stringify({
    created: EPOCH,
    architecture: "amd64",
    os: "linux",
    config,
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((l) => ({ created: EPOCH, created_by: `k8slab images: ${l.comment ?? "layer"}` })),
  });
}

const descriptor = (d: Descriptor): Descriptor => ({ mediaType: d.mediaType, digest: d.digest, size: d.size });

export function imageManifest(config: Descriptor, layers: LayerBlob[]): string {
  return JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.manifest, config: descriptor(config), layers: layers.map(descriptor) });
}

/** index.json: one manifest, named for containerd (full ref) and for OCI tools (the tag). */
export function imageIndex(manifest: Descriptor, ref: ImageRef): string {
  return JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA.index,
    manifests: [
      {
        ...descriptor(manifest),
        platform: { architecture: "amd64", os: "linux" },
        annotations: { [IMAGE_NAME_ANNOTATION]: refString(ref), [REF_NAME_ANNOTATION]: ref.tag },
      },
    ],
  });
}

function writeBlob(blobsDir: string, mediaType: string, text: string): Descriptor {
  const hex = sha256(text);
  const file = path.join(blobsDir, hex);
  fs.writeFileSync(file, text, { mode: 0o644 });
  fs.chmodSync(file, 0o644);
  return { mediaType, digest: `sha256:${hex}`, size: Buffer.byteLength(text) };
}

export interface ImageLayout {
  dir: string;
  manifest: Descriptor;
  config: Descriptor;
}

/**
 * Write an OCI image layout into dir (which must not exist): layer blobs are hard-linked
 * (copied across filesystems) from where they were built, then config, manifest, index.json, oci-layout.
 */
export function writeLayout(dir: string, ref: ImageRef, run: RunConfig, layers: LayerBlob[]): ImageLayout {
  const blobs = path.join(dir, "blobs", "sha256");
  fs.mkdirSync(blobs, { recursive: true });
  for (const d of [dir, path.join(dir, "blobs"), blobs]) fs.chmodSync(d, 0o755);
  for (const l of layers) {
    const to = path.join(blobs, l.digest.slice("sha256:".length));
    if (fs.existsSync(to)) continue; // the same layer twice in one image
    try {
      fs.linkSync(l.file, to);
    } catch {
      fs.copyFileSync(l.file, to);
      fs.chmodSync(to, 0o644);
    }
  }
  const config = writeBlob(blobs, MEDIA.config, imageConfig(run, layers));
  const manifest = writeBlob(blobs, MEDIA.manifest, imageManifest(config, layers));
  fs.writeFileSync(path.join(dir, "index.json"), imageIndex(manifest, ref), { mode: 0o644 });
  fs.writeFileSync(path.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }), { mode: 0o644 });
  for (const f of ["index.json", "oci-layout"]) fs.chmodSync(path.join(dir, f), 0o644);
  return { dir, manifest, config };
}

export interface OciArchive {
  ref: string;
  archive: string;
  /** sha256 of the archive file itself. */
  sha256: string;
  size: number;
  manifestDigest: Digest;
  configDigest: Digest;
  layers: { digest: Digest; diffId: Digest; size: number; mediaType: string }[];
}

/** Tar an image layout into archive, deterministically. */
export async function packLayout(layout: ImageLayout, ref: ImageRef, layers: LayerBlob[], archive: string): Promise<OciArchive> {
  fs.mkdirSync(path.dirname(archive), { recursive: true });
  await tarTree(layout.dir, archive);
  fs.chmodSync(archive, 0o644);
  return {
    ref: refString(ref),
    archive,
    sha256: await sha256File(archive),
    size: fs.statSync(archive).size,
    manifestDigest: layout.manifest.digest,
    configDigest: layout.config.digest,
    layers: layers.map((l) => ({ digest: l.digest, diffId: l.diffId, size: l.size, mediaType: l.mediaType })),
  };
}

/** One call from trees to archive: each tree becomes a layer, in order (later layers on top). */
export async function buildOciArchive(opts: {
  trees: string[];
  ref: ImageRef;
  run: RunConfig;
  archive: string;
  compression?: Compression;
  /** Scratch space (removed afterwards); default next to the archive. */
  workDir?: string;
}): Promise<OciArchive> {
  const work = opts.workDir ?? `${opts.archive}.work`;
  fs.rmSync(work, { recursive: true, force: true });
  try {
    const blobs = path.join(work, "blobs");
    const layers: LayerBlob[] = [];
    for (const tree of opts.trees) layers.push(await buildLayer(tree, blobs, opts.compression));
    const layout = writeLayout(path.join(work, "layout"), opts.ref, opts.run, layers);
    return await packLayout(layout, opts.ref, layers, opts.archive);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

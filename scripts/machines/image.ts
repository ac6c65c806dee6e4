// The node OS image cache: key from the builder's inputs, lookup, build-once under a lock, prune.
// Two flavours from one builder: the VM image (qcow2 + kernel) and the container nodes' rootfs directory.
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import lockfile from "proper-lockfile";
import {
  buildContainerRootfs,
  buildImage,
  type ContainerRootfsManifest,
  containerDir,
  type Flavour,
  guestDir,
  type ImageManifest,
  ROOT_SIZE_GIB,
  SUITE,
  VM_ONLY_PACKAGES,
} from "./image-build.ts";
import { ROOT_LABEL } from "./render.ts";
import { imagesDir } from "./spec.ts";

export { type ContainerRootfsManifest, type ImageManifest, imagePackages, type NodeImage } from "./image-build.ts";

const builderFile = path.join(path.dirname(fileURLToPath(import.meta.url)), "image-build.ts");

const filesOf = (dir: string, prefix: string) =>
  Object.fromEntries(
    fs
      .readdirSync(dir)
      .sort()
      .map((f) => [`${prefix}/${f}`, fs.readFileSync(path.join(dir, f), "utf8")]),
  );

/**
 * Everything an image is built from, hashed: the package list, the builder (image-build.ts) and the files baked in
 * (guest/ for both flavours, container/ for the container one). The mirror is not an input: the same suite from
 * another mirror is the same image.
 */
export function imageInputs(flavour: Flavour = "vm"): Record<string, string> {
  const inputs: Record<string, string> = {
    suite: SUITE,
    "image-build.ts": fs.readFileSync(builderFile, "utf8"),
    ...filesOf(guestDir, "guest"),
  };
  if (flavour === "vm") return { ...inputs, size: String(ROOT_SIZE_GIB), "render.ts#ROOT_LABEL": ROOT_LABEL };
  return { ...inputs, flavour, withoutPackages: VM_ONLY_PACKAGES.join(","), ...filesOf(containerDir, "container") };
}

/** The VM image's key is trixie-<hash>; the container rootfs's ct-trixie-<hash>, so the two never share a folder. */
export function imageKey(inputs: Record<string, string> = imageInputs()): string {
  const h = createHash("sha256");
  for (const k of Object.keys(inputs).sort()) h.update(`${k}\0${inputs[k]}\0`);
  return `${inputs.flavour === "container" ? "ct-" : ""}${SUITE}-${h.digest("hex").slice(0, 16)}`;
}

export const containerRootfsKey = () => imageKey(imageInputs("container"));

function readManifest<T>(key: string): (T & { dir: string }) | undefined {
  const dir = path.join(imagesDir(), key);
  const manifest = path.join(dir, "manifest.json");
  if (!fs.existsSync(manifest)) return undefined;
  return { ...(JSON.parse(fs.readFileSync(manifest, "utf8")) as T), dir };
}

/** The cached image for the current inputs, if it is complete; its files where they are now (an imported cache may live elsewhere). */
export function findImage(key = imageKey()): ImageManifest | undefined {
  const m = readManifest<ImageManifest>(key);
  if (!m) return undefined;
  const here = (file: string) => path.join(m.dir, path.basename(file));
  return { ...m, kernel: here(m.kernel), initrd: here(m.initrd), rootfs: here(m.rootfs) };
}

export function findContainerRootfs(key = containerRootfsKey()): ContainerRootfsManifest | undefined {
  const m = readManifest<ContainerRootfsManifest>(key);
  return m && { ...m, rootfs: path.join(m.dir, "rootfs") };
}

/** Reuse the cached build of key, else build it once: concurrent callers wait on a lock. */
async function ensureBuilt<T>(key: string, find: (key: string) => T | undefined, build: (key: string, dir: string) => Promise<T>, rebuild = false) {
  const dir = path.join(imagesDir(), key);
  const cached = !rebuild && find(key);
  if (cached) return { ...cached, reused: true };
  fs.mkdirSync(imagesDir(), { recursive: true });
  const release = await lockfile.lock(dir, {
    realpath: false,
    stale: 60_000,
    update: 10_000,
    retries: { retries: 1000, minTimeout: 1000, maxTimeout: 3000 },
  });
  try {
    const done = !rebuild && find(key);
    if (done) return { ...done, reused: true };
    return { ...(await build(key, dir)), reused: false };
  } finally {
    await release();
  }
}

/** The VM image for the current inputs: reused when cached, else built once. */
export async function ensureImage(opts: { rebuild?: boolean } = {}): Promise<ImageManifest & { reused: boolean }> {
  return ensureBuilt(imageKey(), findImage, buildImage, opts.rebuild);
}

/** The container nodes' rootfs for the current inputs: reused when cached, else built once. */
export async function ensureContainerRootfs(opts: { rebuild?: boolean } = {}): Promise<ContainerRootfsManifest & { reused: boolean }> {
  return ensureBuilt(containerRootfsKey(), findContainerRootfs, buildContainerRootfs, opts.rebuild);
}

/** Remove cached images other than the current VM image and container rootfs (they are never used again). */
export function pruneImages(): string[] {
  const keep = [imageKey(), containerRootfsKey()];
  if (!fs.existsSync(imagesDir())) return [];
  const removed: string[] = [];
  for (const d of fs.readdirSync(imagesDir())) {
    // Leave the current images, locks, and a build another process is running (its lock exists).
    if (keep.includes(d) || d.endsWith(".lock") || (d.endsWith(".build") && fs.existsSync(path.join(imagesDir(), `${d.slice(0, -6)}.lock`)))) continue;
    fs.rmSync(path.join(imagesDir(), d), { recursive: true, force: true });
    removed.push(d);
  }
  return removed;
}

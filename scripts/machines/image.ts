// The node OS image cache: key from the builder's inputs, lookup, build-once under a lock, prune.
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import lockfile from "proper-lockfile";
import { buildImage, guestDir, type ImageManifest, ROOT_SIZE_GIB, SUITE } from "./image-build.ts";
import { ROOT_LABEL } from "./render.ts";
import { imagesDir } from "./spec.ts";

export { type ImageManifest, imagePackages, type NodeImage } from "./image-build.ts";

const builderFile = path.join(path.dirname(fileURLToPath(import.meta.url)), "image-build.ts");

/** Everything the image is built from, hashed: the package list, the builder (image-build.ts) and the guest files baked in. The mirror is not an input: the same suite from another mirror is the same image. */
export function imageInputs(): Record<string, string> {
  const inputs: Record<string, string> = {
    suite: SUITE,
    size: String(ROOT_SIZE_GIB),
    "image-build.ts": fs.readFileSync(builderFile, "utf8"),
    "render.ts#ROOT_LABEL": ROOT_LABEL,
  };
  for (const f of fs.readdirSync(guestDir).sort()) inputs[`guest/${f}`] = fs.readFileSync(path.join(guestDir, f), "utf8");
  return inputs;
}

export function imageKey(inputs: Record<string, string> = imageInputs()): string {
  const h = createHash("sha256");
  for (const k of Object.keys(inputs).sort()) h.update(`${k}\0${inputs[k]}\0`);
  return `${SUITE}-${h.digest("hex").slice(0, 16)}`;
}

/** The cached image for the current inputs, if it is complete; its files where they are now (an imported cache may live elsewhere). */
export function findImage(key = imageKey()): ImageManifest | undefined {
  const dir = path.join(imagesDir(), key);
  const manifest = path.join(dir, "manifest.json");
  if (!fs.existsSync(manifest)) return undefined;
  const m = JSON.parse(fs.readFileSync(manifest, "utf8")) as ImageManifest;
  const here = (file: string) => path.join(dir, path.basename(file));
  return { ...m, dir, kernel: here(m.kernel), initrd: here(m.initrd), rootfs: here(m.rootfs) };
}

/** The node image for the current inputs: reused when cached, else built once (concurrent callers wait on a lock). */
export async function ensureImage(opts: { rebuild?: boolean } = {}): Promise<ImageManifest & { reused: boolean }> {
  const key = imageKey();
  const dir = path.join(imagesDir(), key);
  const cached = !opts.rebuild && findImage(key);
  if (cached) return { ...cached, reused: true };
  fs.mkdirSync(imagesDir(), { recursive: true });
  const release = await lockfile.lock(dir, {
    realpath: false,
    stale: 60_000,
    update: 10_000,
    retries: { retries: 1000, minTimeout: 1000, maxTimeout: 3000 },
  });
  try {
    const done = !opts.rebuild && findImage(key);
    if (done) return { ...done, reused: true };
    return { ...(await buildImage(key, dir)), reused: false };
  } finally {
    await release();
  }
}

/** Remove cached images other than the current one (they are never used again). */
export function pruneImages(): string[] {
  const keep = imageKey();
  if (!fs.existsSync(imagesDir())) return [];
  const removed: string[] = [];
  for (const d of fs.readdirSync(imagesDir())) {
    // Leave the current image, locks, and a build another process is running (its lock exists).
    if (d === keep || d.endsWith(".lock") || (d.endsWith(".build") && fs.existsSync(path.join(imagesDir(), `${d.slice(0, -6)}.lock`)))) continue;
    fs.rmSync(path.join(imagesDir(), d), { recursive: true, force: true });
    removed.push(d);
  }
  return removed;
}

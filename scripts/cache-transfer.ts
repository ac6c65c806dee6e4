// `k8slab toolchain --export FILE | --import FILE`: everything this checkout builds a lab from, as one
// archive (scripts/toolchain/archive.ts). Export builds what is missing first; import checks it all
// before it replaces anything, and needs neither Go nor the package mirror.
import path from "node:path";
import { EXIT } from "../core/exit.ts";
import { ensureImages } from "./images/build.ts";
import { ensureImage } from "./machines/image.ts";
import { ArchiveError, exportArchive, importArchive } from "./toolchain/archive.ts";
import { ensureToolchain, loadManifest, withCacheLock } from "./toolchain/index.ts";
import { manifestDigest } from "./toolchain/manifest.ts";
import { bundleDir, cacheRoot } from "./toolchain/paths.ts";
import { ARCHIVE_FILE, assertInput, assertOutput } from "./user-file.ts";

const say = (line: string) => process.stderr.write(`${line}\n`);
const mib = (bytes: number) => `${(bytes / 1048576).toFixed(0)} MiB`;
const since = (t: number) => `${((Date.now() - t) / 1000).toFixed(1)} s`;

export async function exportCommand(file: string): Promise<number> {
  // Where it goes is checked before a build of many minutes, not after.
  assertOutput(file, "--export");
  assertOutput(`${file}.sha256`, "--export");
  const started = Date.now();
  if (!(await ensureToolchain())) {
    say("toolchain --export: the bundle is incomplete (see above)");
    return EXIT.failed;
  }
  const image = await ensureImage();
  const images = await ensureImages();
  if (images.skipped.length || images.failed.length) {
    say(`toolchain --export: container images missing: ${[...images.skipped, ...images.failed].map((i) => i.name).join(", ")}`);
    return EXIT.failed;
  }
  const root = cacheRoot();
  const digest = manifestDigest(await loadManifest());
  const rel = (p: string) => path.relative(root, p);
  const written = await withCacheLock(say, () =>
    exportArchive(file, {
      cacheRoot: root,
      dirs: [rel(bundleDir()), rel(image.dir), ...images.images.map((i) => rel(path.dirname(i.archive)))],
      manifestDigest: digest,
      nodeImage: image.key,
      images: images.images.map((i) => ({ name: i.name, key: i.key })),
    }),
  );
  say(`${file}: ${mib(written.size)}, ${written.files} files, sha256 ${written.sha256} (in ${file}.sha256), in ${since(started)}`);
  return EXIT.ok;
}

export async function importCommand(file: string): Promise<number> {
  assertInput(file, ARCHIVE_FILE, "--import"); // before the cache lock, which may be waited for
  const started = Date.now();
  try {
    const index = await withCacheLock(say, async () => importArchive(file, { cacheRoot: cacheRoot(), manifestDigest: manifestDigest(await loadManifest()) }));
    say(
      `${file}: imported ${index.files.length} files into ${cacheRoot()} (the bundle, node image ${index.nodeImage}, ${index.images.length} container images) in ${since(started)}`,
    );
    return EXIT.ok;
  } catch (err) {
    if (!(err instanceof ArchiveError)) throw err;
    say(`toolchain --import: ${err.message}; the cache is unchanged`);
    return EXIT.invalid;
  }
}

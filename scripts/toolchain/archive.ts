// One archive with everything a lab is built from on this machine (the bundle, the node image, the
// container images), so a room of machines imports it instead of building: `k8slab toolchain
// --export FILE` / `--import FILE`. The archive is a zstd-compressed tar whose first member,
// k8slab-archive.json, lists every file with its size, mode and sha256; FILE.sha256 beside it
// checksums the whole. Same cache, same bytes: names sorted, times, owners and modes normalised.
import fs from "node:fs";
import path from "node:path";
import { $ } from "zx";
import { sha256File } from "../files.ts";
import {
  ARCHIVE_FILE,
  ARCHIVE_INDEX,
  assertOutput,
  CHECKSUM_FILE,
  checkInput,
  readOptionalText,
  readText,
  writeOutput,
  writeOutputWith,
} from "../user-file.ts";

export const ARCHIVE_FORMAT = 1;
export const INDEX_NAME = "k8slab-archive.json";

export interface ArchiveIndex {
  format: typeof ARCHIVE_FORMAT;
  /** The toolchain manifest (versions.yaml) the bundle was built from: an import into a checkout that pins other versions is refused. */
  manifestDigest: string;
  /** The node image's key and each container image's name and key, as this checkout computes them. */
  nodeImage: string;
  images: { name: string; key: string }[];
  /** The folders it holds, under the cache root; an import replaces each as a whole. */
  dirs: string[];
  /** Every file, by its path under the cache root. */
  files: { path: string; size: number; mode: number; sha256: string }[];
}

/** What goes in: folders under the cache root, and what the index says about them. */
export interface ArchiveContent {
  cacheRoot: string;
  /** Folders relative to the cache root, e.g. bundle-v1, images/<key>, images-oci/images/<name>/<key>. */
  dirs: string[];
  manifestDigest: string;
  nodeImage: string;
  images: { name: string; key: string }[];
}

/** Every regular file under the folders, sorted; anything else (a symlink, a socket) is refused. */
function listFiles(root: string, dirs: string[]): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const child = path.posix.join(rel, entry.name);
      if (entry.isDirectory()) walk(child);
      else if (entry.isFile()) out.push(child);
      else throw new Error(`${path.join(root, child)} is not a regular file: it cannot go into the archive`);
    }
  };
  for (const d of dirs) {
    if (!fs.existsSync(path.join(root, d))) throw new Error(`${path.join(root, d)} is missing`);
    walk(d);
  }
  return out.sort();
}

/** The tar flags that make the same files the same bytes. */
const REPRODUCIBLE = [
  "--format=posix",
  "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
  "--mtime=@0",
  "--owner=0",
  "--group=0",
  "--numeric-owner",
];

/** Writes the archive and FILE.sha256; returns its size and sha256. */
export async function exportArchive(file: string, content: ArchiveContent): Promise<{ size: number; sha256: string; files: number }> {
  assertOutput(file, "--export");
  assertOutput(`${file}.sha256`, "--export");
  const names = listFiles(content.cacheRoot, content.dirs);
  const files = [];
  for (const name of names) {
    const st = fs.statSync(path.join(content.cacheRoot, name));
    files.push({ path: name, size: st.size, mode: st.mode & 0o755, sha256: await sha256File(path.join(content.cacheRoot, name)) });
  }
  const { manifestDigest, nodeImage, images, dirs } = content;
  const index: ArchiveIndex = { format: ARCHIVE_FORMAT, manifestDigest, nodeImage, images, dirs, files };
  // The archive is made beside FILE and renamed over it (scripts/user-file.ts): a FILE that is not a regular file is refused.
  const work = fs.mkdtempSync(path.join(path.dirname(path.resolve(file)), ".k8slab-export-"));
  try {
    fs.writeFileSync(path.join(work, INDEX_NAME), `${JSON.stringify(index, null, 1)}\n`);
    fs.writeFileSync(path.join(work, "files"), `${names.join("\0")}\0`);
    // Modes are normalised to what the index says (0644 or 0755); the index is the first member.
    await writeOutputWith(
      file,
      (partial) =>
        $`tar ${REPRODUCIBLE} --mode=u+rw,go+r,go-w --no-recursion -c -C ${work} ${INDEX_NAME} -C ${content.cacheRoot} --null -T ${path.join(work, "files")} | zstd -q -3 -T1 -o ${partial}`
          .quiet()
          .then(() => undefined),
      "--export",
    );
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const sha256 = await sha256File(file);
  writeOutput(`${file}.sha256`, `${sha256}  ${path.basename(file)}\n`, "--export");
  return { size: fs.statSync(file).size, sha256, files: files.length };
}

export class ArchiveError extends Error {}

/**
 * Checks the archive (its .sha256 when present, every member against the index, the toolchain
 * manifest it was built for), then moves its folders into the cache, replacing what was there.
 * Nothing in the cache changes unless all of it checks out.
 */
export async function importArchive(file: string, opts: { cacheRoot: string; manifestDigest: string }): Promise<ArchiveIndex> {
  // Checked before tar or zstd opens it: a FIFO, a device, a folder or a symlink loop is refused.
  const refused = checkInput(file, ARCHIVE_FILE);
  if (refused) throw new ArchiveError(`${file}: ${refused}`);
  const sidecar = `${file}.sha256`;
  let sum: string | undefined;
  try {
    sum = readOptionalText(sidecar, CHECKSUM_FILE);
  } catch (err) {
    throw new ArchiveError((err as Error).message);
  }
  if (sum !== undefined) {
    const want = sum.split(/\s+/)[0];
    const got = await sha256File(file);
    if (want !== got) throw new ArchiveError(`${file}: sha256 ${got} does not match ${sidecar} (${want}): the archive is damaged or not the one exported`);
  }
  // Only plain files and folders under the index's paths may come out of it: list before extracting.
  const listing = await $({ nothrow: true, quiet: true })`zstd -dc ${file} | tar -tv --numeric-owner -f -`;
  if (listing.exitCode !== 0) throw new ArchiveError(`${file}: not a k8slab archive (${listing.stderr.trim().split("\n").pop()})`);
  const members = listing.stdout.trim().split("\n").filter(Boolean);
  const bad = members.find((m) => !/^[-d]/.test(m));
  if (bad) throw new ArchiveError(`${file}: holds something other than files and folders: ${bad}`);
  fs.mkdirSync(opts.cacheRoot, { recursive: true });
  const work = fs.mkdtempSync(path.join(opts.cacheRoot, ".k8slab-import-"));
  try {
    await $`zstd -dc ${file} | tar -x --no-same-owner --no-same-permissions -C ${work} -f -`.quiet();
    const indexFile = path.join(work, INDEX_NAME);
    if (!fs.existsSync(indexFile)) throw new ArchiveError(`${file}: no ${INDEX_NAME}: not a k8slab archive`);
    const indexText = readText(indexFile, ARCHIVE_INDEX);
    if (typeof indexText !== "string") throw new ArchiveError(`${file}: its ${INDEX_NAME} ${indexText.reason}`);
    const index = JSON.parse(indexText) as ArchiveIndex;
    if (index.format !== ARCHIVE_FORMAT) throw new ArchiveError(`${file}: archive format ${index.format}, this k8slab reads ${ARCHIVE_FORMAT}`);
    if (index.manifestDigest !== opts.manifestDigest) {
      throw new ArchiveError(`${file}: built for toolchain ${index.manifestDigest}, this checkout pins ${opts.manifestDigest}: export it from the same commit`);
    }
    await verifyFiles(work, index, file);
    for (const top of index.dirs) {
      const target = path.join(opts.cacheRoot, top);
      const old = `${target}.k8slab-old`;
      fs.rmSync(old, { recursive: true, force: true });
      fs.mkdirSync(path.dirname(target), { recursive: true });
      if (fs.existsSync(target)) fs.renameSync(target, old);
      fs.renameSync(path.join(work, top), target);
      fs.rmSync(old, { recursive: true, force: true });
    }
    return index;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

async function verifyFiles(work: string, index: ArchiveIndex, file: string): Promise<void> {
  const inside = (p: string) => !path.posix.isAbsolute(p) && !p.split("/").includes("..") && p !== "" && p !== ".";
  const badDir = index.dirs.find((d) => !inside(d));
  if (badDir !== undefined) throw new ArchiveError(`${file}: the index names the folder ${badDir}, outside the cache`);
  const listed = new Set<string>();
  for (const f of index.files) {
    if (!inside(f.path) || !index.dirs.some((d) => f.path.startsWith(`${d}/`)))
      throw new ArchiveError(`${file}: the index names ${f.path}, outside its folders`);
    listed.add(f.path);
    const abs = path.join(work, f.path);
    if (!fs.existsSync(abs)) throw new ArchiveError(`${file}: ${f.path} is in the index but not in the archive`);
    if (fs.statSync(abs).size !== f.size || (await sha256File(abs)) !== f.sha256)
      throw new ArchiveError(`${file}: ${f.path} does not match its checksum: the archive is damaged`);
    fs.chmodSync(abs, f.mode);
  }
  const extra = listFiles(
    work,
    fs.readdirSync(work).filter((d) => d !== INDEX_NAME),
  ).find((f) => !listed.has(f));
  if (extra) throw new ArchiveError(`${file}: ${extra} is in the archive but not in its index`);
}

// The bundle's node binaries as a read-only ext4 disk image each new VM attaches: a node copies its binaries from
// it instead of receiving ~0.6 GiB through ssh, which the guest decrypts and unpacks under emulation.
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { $ } from "zx";
import { BUNDLE_DISK_LABEL } from "../../core/names.ts";
import { NODE_BUNDLE_FILES } from "../../core/node.ts";
import { removeTree } from "../files.ts";
import { bundleDir, cacheRoot } from "./paths.ts";

/** What the disk holds, written at its root: a node copies from it only when the key is the one it expects. */
export const BUNDLE_DISK_INDEX = "bundle-disk.json";

const disksDir = () => path.join(cacheRoot(), "bundle-disks");

/** The node files' sha256s (bundle.json's record), hashed: a rebuilt binary is a new disk. */
export function bundleDiskKey(bundleFiles: Readonly<Record<string, string>>): string | undefined {
  if (NODE_BUNDLE_FILES.some((f) => !bundleFiles[f])) return undefined;
  const h = createHash("sha256");
  for (const f of [...NODE_BUNDLE_FILES].sort()) h.update(`${f}=${bundleFiles[f]}\0`);
  return `bundle-${h.digest("hex").slice(0, 16)}`;
}

export const bundleDiskFile = (key: string) => path.join(disksDir(), key, "bundle.img");

/** The disk for these files, made when missing (natively, ~2 s); older disks are removed (a running VM keeps its open file). */
export async function ensureBundleDisk(bundleFiles: Readonly<Record<string, string>>): Promise<{ key: string; file: string; reused: boolean } | undefined> {
  const key = bundleDiskKey(bundleFiles);
  if (!key) return undefined;
  const file = bundleDiskFile(key);
  if (fs.existsSync(file)) return { key, file, reused: true };
  const work = path.join(disksDir(), `${key}.${process.pid}.build`);
  await removeTree(work);
  const tree = path.join(work, "tree");
  try {
    let bytes = 0;
    for (const f of NODE_BUNDLE_FILES) {
      fs.mkdirSync(path.dirname(path.join(tree, f)), { recursive: true });
      fs.linkSync(path.join(bundleDir(), f), path.join(tree, f));
      bytes += fs.statSync(path.join(tree, f)).size;
    }
    const files = Object.fromEntries(NODE_BUNDLE_FILES.map((f) => [f, bundleFiles[f]]));
    fs.writeFileSync(path.join(tree, BUNDLE_DISK_INDEX), `${JSON.stringify({ key, files }, null, 2)}\n`);
    const img = path.join(work, "bundle.img");
    // Room for ext4's own metadata: a tenth more and 64 MiB.
    await $`truncate -s ${Math.ceil((bytes * 1.1) / 1048576) + 64}M ${img}`.quiet();
    await $`mkfs.ext4 -q -F -L ${BUNDLE_DISK_LABEL} -E root_owner=0:0 -d ${tree} ${img}`.quiet();
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.renameSync(img, file);
  } finally {
    await removeTree(work);
  }
  for (const d of fs.readdirSync(disksDir())) if (d !== key && !d.endsWith(".build")) fs.rmSync(path.join(disksDir(), d), { recursive: true, force: true });
  return { key, file, reused: false };
}

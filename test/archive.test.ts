// The toolchain archive on a small cache made here: reproducible, checked on import, refused whole when anything is off.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { type ArchiveContent, exportArchive, importArchive } from "../scripts/toolchain/archive.ts";

function fakeCache(root: string): ArchiveContent {
  const put = (rel: string, content: string, mode = 0o644) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), content, { mode });
  };
  put("bundle-v1/bin/kubectl", "#!/bin/sh\necho kubectl\n", 0o755);
  put("bundle-v1/bundle.json", '{"artifacts":{}}\n');
  put("images/trixie-abc/rootfs.qcow2", "disk".repeat(1000));
  put("images-oci/images/pause/k1/pause-k1.oci.tar", "oci");
  put("images-oci/images/pause/k1/result.json", "{}\n");
  put("go/pkg/mod/cache.txt", "not exported"); // the Go caches stay behind
  return {
    cacheRoot: root,
    dirs: ["bundle-v1", "images/trixie-abc", "images-oci/images/pause/k1"],
    manifestDigest: "m1",
    nodeImage: "trixie-abc",
    images: [{ name: "pause", key: "k1" }],
  };
}

const tree = (root: string, rel = ""): string[] =>
  fs.existsSync(path.join(root, rel))
    ? fs.readdirSync(path.join(root, rel), { withFileTypes: true }).flatMap((e) => {
        const child = path.join(rel, e.name);
        return e.isDirectory()
          ? tree(root, child)
          : [`${child} ${(fs.statSync(path.join(root, child)).mode & 0o777).toString(8)} ${fs.readFileSync(path.join(root, child), "utf8").length}`];
      })
    : [];

test("export is reproducible; import puts exactly the exported folders into a clean cache, modes included", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-archive-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const content = fakeCache(path.join(dir, "cache"));
  const a = await exportArchive(path.join(dir, "a.tar.zst"), content);
  // The same files touched later (other times) give the same bytes.
  fs.utimesSync(path.join(dir, "cache/bundle-v1/bin/kubectl"), new Date(2030, 1, 1), new Date(2030, 1, 1));
  const b = await exportArchive(path.join(dir, "b.tar.zst"), content);
  assert.equal(a.sha256, b.sha256, "same cache, same archive");
  assert.equal(a.files, 5);
  assert.equal(fs.readFileSync(path.join(dir, "a.tar.zst.sha256"), "utf8"), `${a.sha256}  a.tar.zst\n`);

  const clean = path.join(dir, "clean");
  const index = await importArchive(path.join(dir, "a.tar.zst"), { cacheRoot: clean, manifestDigest: "m1" });
  assert.deepEqual(index.dirs, content.dirs);
  assert.deepEqual(
    tree(clean).sort(),
    tree(content.cacheRoot)
      .filter((l) => !l.startsWith("go/"))
      .sort(),
  );
  assert.ok(!fs.readdirSync(clean).some((d) => d.startsWith(".k8slab-import-")), "no work folder left");
});

test("import refuses a damaged archive, another checkout's toolchain, or a member outside its index, and leaves the cache as it was", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-archive-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const content = fakeCache(path.join(dir, "cache"));
  const file = path.join(dir, "a.tar.zst");
  await exportArchive(file, content);
  const target = path.join(dir, "target");
  fs.mkdirSync(path.join(target, "bundle-v1"), { recursive: true });
  fs.writeFileSync(path.join(target, "bundle-v1/old"), "kept");
  const before = tree(target);

  await assert.rejects(importArchive(file, { cacheRoot: target, manifestDigest: "m2" }), /built for toolchain m1, this checkout pins m2/);

  const flipped = fs.readFileSync(file);
  flipped[flipped.length - 20] ^= 0xff;
  fs.writeFileSync(path.join(dir, "bad.tar.zst"), flipped);
  fs.copyFileSync(`${file}.sha256`, path.join(dir, "bad.tar.zst.sha256"));
  await assert.rejects(importArchive(path.join(dir, "bad.tar.zst"), { cacheRoot: target, manifestDigest: "m1" }), /does not match .*bad\.tar\.zst\.sha256/);

  // Without its .sha256 the damage is still found: by zstd's own check or a member's checksum.
  fs.rmSync(path.join(dir, "bad.tar.zst.sha256"));
  await assert.rejects(importArchive(path.join(dir, "bad.tar.zst"), { cacheRoot: target, manifestDigest: "m1" }), /not a k8slab archive|damaged/);

  // A member the index does not list (here a symlink, which no k8slab cache holds).
  const evil = path.join(dir, "evil");
  fs.mkdirSync(evil);
  execFileSync("sh", [
    "-c",
    `zstd -dc ${file} | tar -x -C ${evil} -f - && ln -s /etc/passwd ${evil}/bundle-v1/passwd && tar -c -C ${evil} . | zstd -q -o ${dir}/evil.tar.zst`,
  ]);
  await assert.rejects(
    importArchive(path.join(dir, "evil.tar.zst"), { cacheRoot: target, manifestDigest: "m1" }),
    /holds something other than files and folders/,
  );

  assert.deepEqual(tree(target), before, "nothing changed");
  assert.ok(!fs.readdirSync(target).some((d) => d.startsWith(".k8slab-import-")), "no work folder left");
});

// k8slab's own Go: the zip reader, the module proxy from GOPROXY, and ensureGo against a file:// proxy
// serving a small stand-in toolchain zip (the real one is 68 MiB; the e2e fetches that).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import zlib from "node:zlib";
import { ensureGo, goPlatform, goPresent, moduleProxy, toolchainModuleVersion } from "../scripts/toolchain/golang.ts";
import type { GoPin } from "../scripts/toolchain/manifest.ts";
import { goRootDir } from "../scripts/toolchain/paths.ts";
import { unzipTo, zipEntries } from "../scripts/toolchain/zip.ts";

/** A zip as Go's archive/zip writes one: local headers, deflated (or stored) data, a central directory. */
function makeZip(files: Record<string, string | Buffer>, opts: { store?: boolean; badCrc?: string } = {}): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, content] of Object.entries(files)) {
    const data = Buffer.from(content);
    const packed = opts.store ? data : zlib.deflateRawSync(data);
    const crc = zlib.crc32(data) ^ (opts.badCrc === name ? 1 : 0);
    const n = Buffer.from(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(opts.store ? 0 : 8, 8);
    local.writeUInt32LE(crc >>> 0, 14);
    local.writeUInt32LE(packed.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(n.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(opts.store ? 0 : 8, 10);
    central.writeUInt32LE(crc >>> 0, 16);
    central.writeUInt32LE(packed.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(n.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, n, packed);
    centrals.push(central, n);
    offset += 30 + n.length + packed.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(files).length, 8);
  end.writeUInt16LE(Object.keys(files).length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

describe("the zip reader", () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-zip-"));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("unpacks deflated and stored entries under the prefix, without it", () => {
    for (const store of [false, true]) {
      const out = path.join(dir, store ? "stored" : "deflated");
      const zip = makeZip({ "m@v1/a.txt": "alpha\n".repeat(100), "m@v1/sub/b.txt": "beta" }, { store });
      assert.deepEqual(unzipTo(zip, out, "m@v1/"), ["a.txt", "sub/b.txt"]);
      assert.equal(fs.readFileSync(path.join(out, "a.txt"), "utf8"), "alpha\n".repeat(100));
      assert.equal(fs.readFileSync(path.join(out, "sub/b.txt"), "utf8"), "beta");
    }
  });

  it("refuses an entry outside its folder, one that climbs out, and damaged contents", () => {
    assert.throws(() => unzipTo(makeZip({ "m@v1/a": "x", "other/b": "y" }), dir, "m@v1/"), /other\/b: outside m@v1\//);
    assert.throws(() => unzipTo(makeZip({ "m@v1/../escape": "x" }), dir, "m@v1/"), /not a path inside the archive/);
    assert.equal(fs.existsSync(path.join(dir, "..", "escape")), false);
    assert.throws(() => unzipTo(makeZip({ "m@v1/a": "x" }, { badCrc: "m@v1/a" }), dir, "m@v1/"), /do not match the archive's CRC-32/);
    assert.throws(() => zipEntries(Buffer.from("not a zip at all, just some bytes")), /not a zip archive/);
  });
});

describe("the module proxy k8slab fetches its Go from", () => {
  it("is GOPROXY's first proxy, the public one when unset, and an error when GOPROXY names none", () => {
    assert.equal(moduleProxy(undefined), "https://proxy.golang.org");
    assert.equal(moduleProxy("https://goproxy.example/,direct"), "https://goproxy.example");
    assert.equal(moduleProxy("direct|file:///srv/proxy"), "file:///srv/proxy");
    assert.throws(() => moduleProxy("off"), /GOPROXY=off names no module proxy/);
  });

  it("names the toolchain module's version as the go command does", () => {
    assert.equal(goPlatform("linux", "x64"), "linux-amd64");
    assert.equal(toolchainModuleVersion("go1.26.8", "linux-amd64"), "v0.0.1-go1.26.8.linux-amd64");
  });
});

describe("ensureGo", () => {
  const platform = "linux-amd64";
  const release = "go1.26.8";
  const prefix = `golang.org/toolchain@${toolchainModuleVersion(release, platform)}/`;
  // A stand-in `go` that answers `go env GOVERSION` as the real one does.
  const zip = makeZip({
    [`${prefix}bin/go`]: `#!/bin/sh\necho ${release}\n`,
    [`${prefix}pkg/tool/linux_amd64/compile`]: "#!/bin/sh\n",
    [`${prefix}src/_go.mod`]: "module std\n",
    [`${prefix}VERSION`]: `${release}\n`,
  });
  const sha = createHash("sha256").update(zip).digest("hex");
  let cache: string;
  let proxy: string;
  const saved = { cache: process.env.K8SLAB_CACHE, proxy: process.env.GOPROXY };
  const lines: string[] = [];
  const log = (s: string) => lines.push(s);

  beforeEach(() => {
    cache = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-go-"));
    proxy = path.join(cache, "proxy");
    const at = path.join(proxy, "golang.org/toolchain/@v");
    fs.mkdirSync(at, { recursive: true });
    fs.writeFileSync(path.join(at, `${toolchainModuleVersion(release, platform)}.zip`), zip);
    process.env.K8SLAB_CACHE = cache;
    process.env.GOPROXY = pathToFileURL(proxy).href;
    lines.length = 0;
  });
  afterEach(() => {
    for (const [k, v] of [
      ["K8SLAB_CACHE", saved.cache],
      ["GOPROXY", saved.proxy],
    ] as const)
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    fs.rmSync(cache, { recursive: true, force: true });
  });

  it("fetches, checks and unpacks the pinned Go as the go command would, once", async () => {
    const pin: GoPin = { version: release, sha256: { [platform]: sha } };
    assert.equal(goPresent(pin, platform), false);
    const root = await ensureGo(pin, log, platform);
    assert.equal(root, goRootDir());
    assert.equal(execFileSync(path.join(root, "bin/go"), ["env", "GOVERSION"]).toString().trim(), release);
    assert.equal(fs.statSync(path.join(root, "pkg/tool/linux_amd64/compile")).mode & 0o111, 0o111);
    assert.equal(fs.readFileSync(path.join(root, "src/go.mod"), "utf8"), "module std\n");
    assert.equal(goPresent(pin, platform), true);
    assert.match(lines.join("\n"), /go: go1\.26\.8 ready/);
    // Present: nothing is fetched again (the proxy is gone and it still answers).
    fs.rmSync(proxy, { recursive: true });
    lines.length = 0;
    assert.equal(await ensureGo(pin, log, platform), root);
    assert.deepEqual(lines, []);
  });

  it("unpacks nothing from a zip whose sha256 is not the pinned one", async () => {
    const pin: GoPin = { version: release, sha256: { [platform]: "0".repeat(64) } };
    await assert.rejects(ensureGo(pin, log, platform), new RegExp(`has sha256 ${sha}, versions.yaml pins 0{64}; nothing was unpacked`));
    assert.equal(fs.existsSync(goRootDir()), false);
  });

  it("refuses a platform nothing is pinned for, and names the one it has", async () => {
    const pin: GoPin = { version: release, sha256: { [platform]: sha } };
    await assert.rejects(ensureGo(pin, log, "linux-riscv64"), /no Go is pinned for linux-riscv64 .* has linux-amd64/);
  });
});

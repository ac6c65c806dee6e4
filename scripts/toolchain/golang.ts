// The Go that builds the bundle: k8slab's own, never the host's. versions.yaml pins its release and the
// sha256 of its zip; the zip comes from the Go module proxy as the module golang.org/toolchain (where the
// go command itself fetches the toolchain GOTOOLCHAIN names) and is unpacked into <cache>/go/sdk. So a
// host with no Go, or an old one, builds the same bytes as any other, and needs nothing but the proxy.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { GoPin } from "./manifest.ts";
import { goCacheDir, goRootDir } from "./paths.ts";
import { unzipTo } from "./zip.ts";

export const TOOLCHAIN_MODULE = "golang.org/toolchain";
const DEFAULT_PROXY = "https://proxy.golang.org";
/** Written last into the unpacked Go: the sha256 of the zip it came from (an interrupted unpack has none). */
const MARKER = ".k8slab-zip-sha256";
const FETCH_TIMEOUT_MS = 600_000;

/** This host as Go names platforms: linux-amd64, linux-arm64. */
export function goPlatform(platform: string = process.platform, arch: string = process.arch): string {
  const goArch = ({ x64: "amd64", arm64: "arm64" } as Record<string, string>)[arch] ?? arch;
  return `${platform}-${goArch}`;
}

/** golang.org/toolchain's version of a Go release: v0.0.1-go1.26.8.linux-amd64. */
export function toolchainModuleVersion(release: string, platform = goPlatform()): string {
  return `v0.0.1-${release}.${platform}`;
}

/**
 * The module proxy to fetch from: the first http(s) or file entry of GOPROXY (a list split by `,` or `|`),
 * else the public one. A GOPROXY with no proxy in it (`off`, `direct`) is an error naming it.
 */
export function moduleProxy(goproxy: string | undefined = process.env.GOPROXY): string {
  if (!goproxy) return DEFAULT_PROXY;
  const url = goproxy
    .split(/[,|]/)
    .map((s) => s.trim())
    .find((s) => /^(https?|file):\/\//.test(s));
  if (!url) throw new Error(`GOPROXY=${goproxy} names no module proxy; k8slab fetches its Go from one (unset GOPROXY for ${DEFAULT_PROXY})`);
  return url.replace(/\/+$/, "");
}

/** Is the pinned Go unpacked in the cache, from the zip the pin names? */
export function goPresent(pin: GoPin, platform = goPlatform()): boolean {
  const marker = path.join(goRootDir(), MARKER);
  return fs.existsSync(marker) && fs.readFileSync(marker, "utf8").trim() === pin.sha256[platform];
}

/**
 * Makes the pinned Go present in the cache: fetched from the module proxy, checked against the pinned
 * sha256 before a byte of it is unpacked, unpacked beside the old one and moved into place. Returns GOROOT.
 */
export async function ensureGo(pin: GoPin, log: (s: string) => void, platform = goPlatform()): Promise<string> {
  const root = goRootDir();
  if (goPresent(pin, platform)) return root;
  const want = pin.sha256[platform];
  if (!want) throw new Error(`no Go is pinned for ${platform} (scripts/toolchain/versions.yaml go.sha256 has ${Object.keys(pin.sha256).join(", ")})`);
  const version = toolchainModuleVersion(pin.version, platform);
  const proxy = moduleProxy();
  const url = `${proxy}/${TOOLCHAIN_MODULE}/@v/${version}.zip`;
  const started = Date.now();
  log(`go: fetching ${pin.version} (${TOOLCHAIN_MODULE}@${version}) from ${proxy}`);
  const zip = await fetchZip(url);
  const got = createHash("sha256").update(zip).digest("hex");
  if (got !== want) throw new Error(`go: ${url} has sha256 ${got}, versions.yaml pins ${want}; nothing was unpacked`);
  const fresh = path.join(goCacheDir(), `sdk.new-${process.pid}`);
  fs.rmSync(fresh, { recursive: true, force: true });
  const files = unzipTo(zip, fresh, `${TOOLCHAIN_MODULE}@${version}/`);
  prepareUnpacked(fresh, files);
  const says = execFileSync(path.join(fresh, "bin", "go"), ["env", "GOVERSION"], { env: { ...process.env, GOROOT: fresh, GOTOOLCHAIN: "local" } })
    .toString()
    .trim();
  if (says !== pin.version) throw new Error(`go: the unpacked ${TOOLCHAIN_MODULE}@${version} says it is ${says}, not ${pin.version}`);
  fs.writeFileSync(path.join(fresh, MARKER), `${want}\n`);
  fs.rmSync(root, { recursive: true, force: true });
  fs.renameSync(fresh, root);
  log(`go: ${pin.version} ready in ${root} (${(zip.length / 2 ** 20).toFixed(0)} MiB, ${files.length} files, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  return root;
}

async function fetchZip(url: string): Promise<Buffer> {
  if (url.startsWith("file://")) return fs.readFileSync(fileURLToPath(url));
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  } catch (e) {
    const cause = (e as Error & { cause?: Error }).cause?.message ?? (e as Error).message;
    throw new Error(`go: fetching ${url}: ${cause} (set GOPROXY to a Go module proxy this host reaches)`);
  }
  if (!res.ok) throw new Error(`go: fetching ${url}: HTTP ${res.status} ${res.statusText}`);
  return Buffer.from(await res.arrayBuffer());
}

/**
 * What the go command does to a toolchain zip it unpacked (cmd/go/internal/toolchain/select.go): a module
 * zip keeps no file modes, so the programs in bin/, pkg/tool/ and lib's go_*_*_exec become executable; and
 * a module zip cannot hold a go.mod below its root, so each _go.mod is copied to go.mod beside it.
 */
export function prepareUnpacked(root: string, files: string[]): void {
  for (const rel of files) {
    const base = path.basename(rel);
    if (rel.startsWith("bin/") || rel.startsWith("pkg/tool/") || (rel.startsWith("lib/") && /^go_.+_.+_exec$/.test(base)))
      fs.chmodSync(path.join(root, rel), 0o755);
    if (base === "_go.mod") fs.copyFileSync(path.join(root, rel), path.join(root, path.dirname(rel), "go.mod"));
  }
}

// Builds every image the lab runs into <cache>/images-oci as an OCI archive, once per set of inputs.
// CLI: npx tsx scripts/images/build.ts [--json] [--only NAME,…] [--rebuild]
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { $ } from "zx";
import { EXIT } from "../../core/exit.ts";
import { removeTree, sha256File, withDirLock } from "../files.ts";
import { hashRecordedFiles, readState } from "../toolchain/bundle.ts";
import { canonicalJson, parseManifest, sha256Hex } from "../toolchain/manifest.ts";
import { bundleDir, bundleStatCache, cacheRoot, logDir, manifestFile, repoRoot, stateFile } from "../toolchain/paths.ts";
import { type ImageSpec, imageCatalog, REGISTRY } from "./catalog.ts";
import { buildLayer, type ImageRef, type LayerBlob, packLayout, refString, writeLayout } from "./oci.ts";
import { type LayerSpec, type Log, type Source, SUITE, stageTree } from "./rootfs.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
export const imagesRoot = () => path.join(cacheRoot(), "images-oci");

/** An input the toolchain or `npm install` has not produced yet: the image is skipped, saying which. */
export class MissingInput extends Error {}

export interface ImageResult {
  name: string;
  ref: string;
  tag: string;
  key: string;
  archive: string;
  /** sha256 of the archive file. */
  sha256: string;
  size: number;
  manifestDigest: string;
  configDigest: string;
  layers: { name: string; key: string; digest: string; diffId: string; size: number }[];
  builtAt: string;
  buildSeconds: number;
  log: string;
  /** True when this call found the image in the cache. */
  reused: boolean;
}

export interface ImagesReport {
  root: string;
  images: ImageResult[];
  skipped: { name: string; reason: string }[];
  failed: { name: string; error: string; log?: string }[];
}

/** The builder's own text: a change to how trees or archives are made rebuilds every layer. */
export function builderDigest(): string {
  return sha256Hex(["oci.ts", "rootfs.ts"].map((f) => fs.readFileSync(path.join(here, f), "utf8")).join("\0"));
}

const sourceId = (s: Source) => canonicalJson(s);

/** A layer's cache key: its spec with every file replaced by its sha256, the suite and the builder. */
export function layerKey(spec: LayerSpec, sha256Of: (s: Source) => string, builder: string): string {
  const files = spec.files?.map((f) => ("from" in f ? { ...f, from: { sha256: sha256Of(f.from) } } : f));
  const suite = spec.debian ? SUITE : undefined;
  return sha256Hex(canonicalJson({ builder, suite, spec: { ...spec, files } })).slice(0, 16);
}

/** An image's cache key: its layers' keys and everything that goes into its config and index. */
export function imageKey(spec: ImageSpec, layerKeys: string[]): string {
  return sha256Hex(canonicalJson({ registry: REGISTRY, name: spec.name, tag: spec.tag, run: spec.run, layerKeys })).slice(0, 16);
}

/** Turns sources into paths and sha256s, once per run; throws MissingInput for what is not there yet. */
class Resolver {
  private memo = new Map<string, { path: string; sha256: string }>();
  private workloadsDir = path.join(imagesRoot(), "workloads");
  private workloadsBuilt?: Promise<void>;
  private bundleHashed?: Promise<Record<string, string | null>>;

  private bundleHashes() {
    this.bundleHashed ??= readState(stateFile()).then((state) => hashRecordedFiles(bundleDir(), state, bundleStatCache()));
    return this.bundleHashed;
  }

  async resolve(src: Source): Promise<{ path: string; sha256: string }> {
    const id = sourceId(src);
    const hit = this.memo.get(id);
    if (hit) return hit;
    const file = await this.locate(src);
    // A bundle file's hash as the toolchain check left it (read again only if its stat changed since).
    const sha256 = "bundle" in src ? ((await this.bundleHashes())[src.bundle] ?? (await sha256File(file))) : await sha256File(file);
    if ("bundle" in src) {
      const recorded = (await readState(stateFile())).artifacts[src.artifact]?.files[src.bundle];
      if (recorded !== sha256)
        throw new MissingInput(`bundle file ${src.bundle} does not match bundle.json (corrupt or being replaced): run \`npx k8slab toolchain\``);
    }
    const r = { path: file, sha256 };
    this.memo.set(id, r);
    return r;
  }

  /** A source resolve() has already seen. */
  get(src: Source): { path: string; sha256: string } {
    const r = this.memo.get(sourceId(src));
    if (!r) throw new Error(`unresolved source ${sourceId(src)}`);
    return r;
  }

  private async locate(src: Source): Promise<string> {
    if ("repo" in src) {
      const file = path.join(repoRoot, src.repo);
      if (!fs.existsSync(file)) throw new MissingInput(`${src.repo} is missing: run \`npm install\``);
      return file;
    }
    if ("bundle" in src) {
      const state = await readState(stateFile());
      const file = path.join(bundleDir(), src.bundle);
      if (!state.artifacts[src.artifact]?.files[src.bundle] || !fs.existsSync(file)) {
        const now = state.building?.name === src.artifact ? " (it is being built now)" : "";
        throw new MissingInput(`bundle artifact "${src.artifact}" (${src.bundle}) is not built yet${now}: run \`npx k8slab toolchain\``);
      }
      return file;
    }
    // The workloads are bundled once per run (about a second; esbuild output is reproducible), and not at all
    // while their sources and the lockfile (which pins what they bundle from node_modules) are unchanged.
    this.workloadsBuilt ??= (async () => {
      const stamp = path.join(this.workloadsDir, "inputs.sha256");
      const inputs = workloadsInputsDigest();
      if (fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8") === inputs) return;
      await $({ cwd: repoRoot })`${process.execPath} --import tsx workloads/build.ts ${this.workloadsDir}`.quiet();
      fs.writeFileSync(stamp, inputs);
    })();
    await this.workloadsBuilt;
    const file = path.join(this.workloadsDir, `${src.workload}.mjs`);
    if (!fs.existsSync(file)) throw new MissingInput(`workloads/build.ts made no ${src.workload}.mjs (is "${src.workload}" in its APPS?)`);
    return file;
  }
}

/** Every file under workloads/ and package-lock.json, hashed: what the workload bundles are made from. */
export function workloadsInputsDigest(): string {
  const h = createHash("sha256");
  const files = [
    ...fs
      .readdirSync(path.join(repoRoot, "workloads"), { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => path.relative(repoRoot, path.join(e.parentPath, e.name))),
    "package-lock.json",
  ].sort();
  for (const f of files)
    h.update(`${f}\0`)
      .update(fs.readFileSync(path.join(repoRoot, f)))
      .update("\0");
  return h.digest("hex");
}

interface Plan {
  spec: ImageSpec;
  ref: ImageRef;
  key: string;
  layers: { spec: LayerSpec; key: string }[];
  dir: string;
}

async function planImage(spec: ImageSpec, resolver: Resolver, builder: string): Promise<Plan> {
  const layers = [];
  for (const l of spec.layers) {
    for (const f of l.files ?? []) if ("from" in f) await resolver.resolve(f.from);
    layers.push({ spec: l, key: layerKey(l, (s) => resolver.get(s).sha256, builder) });
  }
  const key = imageKey(
    spec,
    layers.map((l) => l.key),
  );
  const ref = { name: `${REGISTRY}/${spec.name}`, tag: spec.tag ?? key.slice(0, 12) };
  return { spec, ref, key, layers, dir: path.join(imagesRoot(), "images", spec.name, key) };
}

function readJson<T>(file: string): T | undefined {
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as T) : undefined;
}

/** A layer from the cache, or built now: its tree staged, tarred, and the tree removed. */
async function ensureLayer(layer: { spec: LayerSpec; key: string }, resolver: Resolver, log: Log, progress: Log, rebuild: boolean): Promise<LayerBlob> {
  const dir = path.join(imagesRoot(), "layers", `${layer.spec.name}-${layer.key}`);
  const meta = readJson<LayerBlob & { blob: string }>(path.join(dir, "layer.json"));
  if (meta && !rebuild && fs.existsSync(path.join(dir, meta.blob))) return { ...meta, file: path.join(dir, meta.blob) };
  const started = Date.now();
  progress(`  layer ${layer.spec.name}: building${layer.spec.debian ? ` (debootstrap ${SUITE}, ${layer.spec.debian.packages.length} extra packages)` : ""}`);
  const work = `${dir}.build`;
  await removeTree(work);
  const tree = path.join(work, "tree");
  let staged: Awaited<ReturnType<typeof stageTree>>;
  let blob: LayerBlob;
  try {
    staged = await stageTree(layer.spec, tree, (s) => resolver.get(s).path, log);
    log(`layer ${layer.spec.name}: tree staged, packing`);
    blob = await buildLayer(tree, work, "gzip", layer.spec.name);
  } finally {
    await removeTree(tree);
  }
  const { installed } = staged;
  const record = { ...blob, file: undefined, blob: path.basename(blob.file), key: layer.key, installed, buildSeconds: seconds(started) };
  fs.writeFileSync(path.join(work, "layer.json"), `${JSON.stringify(record, null, 2)}\n`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(work, dir);
  progress(`  layer ${layer.spec.name}: ${mib(blob.size)} in ${seconds(started)} s`);
  return { ...blob, file: path.join(dir, record.blob) };
}

const seconds = (since: number) => Math.round((Date.now() - since) / 100) / 10;
const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;

async function buildImage(plan: Plan, resolver: Resolver, logFile: string, progress: Log, rebuild: boolean): Promise<ImageResult> {
  const started = Date.now();
  const log: Log = (s) => fs.appendFileSync(logFile, `[+${seconds(started)} s] ${s.endsWith("\n") ? s : `${s}\n`}`);
  log(`image ${refString(plan.ref)} key ${plan.key}`);
  const blobs: LayerBlob[] = [];
  for (const l of plan.layers) blobs.push(await ensureLayer(l, resolver, log, progress, rebuild));
  const work = `${plan.dir}.build`;
  fs.rmSync(work, { recursive: true, force: true });
  const fileName = `${plan.spec.name}-${plan.ref.tag}.oci.tar`;
  let packed: Awaited<ReturnType<typeof packLayout>>;
  try {
    const layout = writeLayout(path.join(work, "layout"), plan.ref, plan.spec.run, blobs);
    packed = await packLayout(layout, plan.ref, blobs, path.join(work, fileName));
  } catch (e) {
    fs.rmSync(work, { recursive: true, force: true });
    throw e;
  }
  fs.rmSync(path.join(work, "layout"), { recursive: true, force: true });
  const result: ImageResult = {
    name: plan.spec.name,
    ref: packed.ref,
    tag: plan.ref.tag,
    key: plan.key,
    archive: path.join(plan.dir, fileName),
    sha256: packed.sha256,
    size: packed.size,
    manifestDigest: packed.manifestDigest,
    configDigest: packed.configDigest,
    layers: blobs.map((b, i) => ({ name: plan.layers[i].spec.name, key: plan.layers[i].key, digest: b.digest, diffId: b.diffId, size: b.size })),
    builtAt: new Date().toISOString(),
    buildSeconds: seconds(started),
    log: logFile,
    reused: false,
  };
  fs.writeFileSync(path.join(work, "result.json"), `${JSON.stringify(result, null, 2)}\n`);
  fs.rmSync(plan.dir, { recursive: true, force: true });
  fs.renameSync(work, plan.dir);
  // Older builds of this image are never imported again.
  for (const d of fs.readdirSync(path.dirname(plan.dir))) if (d !== plan.key) fs.rmSync(path.join(path.dirname(plan.dir), d), { recursive: true, force: true });
  return result;
}

/** The cached result for a plan, if its archive is still there and whole (found in the plan's folder: an imported cache may live elsewhere). */
function cachedResult(plan: Plan): ImageResult | undefined {
  const r = readJson<ImageResult>(path.join(plan.dir, "result.json"));
  const archive = r && path.join(plan.dir, path.basename(r.archive));
  return r && archive && fs.existsSync(archive) && fs.statSync(archive).size === r.size ? { ...r, archive, reused: true } : undefined;
}

/** Remove cached layers no cached image refers to (by key: a rebuilt layer often has the same digest). */
function pruneLayers(): void {
  const layersDir = path.join(imagesRoot(), "layers");
  if (!fs.existsSync(layersDir)) return;
  const used = new Set<string>();
  const imagesDir = path.join(imagesRoot(), "images");
  for (const name of fs.existsSync(imagesDir) ? fs.readdirSync(imagesDir) : []) {
    for (const key of fs.readdirSync(path.join(imagesDir, name))) {
      for (const l of readJson<ImageResult>(path.join(imagesDir, name, key, "result.json"))?.layers ?? []) used.add(`${l.name}-${l.key}`);
    }
  }
  for (const d of fs.readdirSync(layersDir)) if (!used.has(d)) fs.rmSync(path.join(layersDir, d), { recursive: true, force: true });
}

/** One build at a time per cache, as the toolchain and node image do; a second caller waits and says so. */
function withImagesLock<T>(progress: Log, fn: () => Promise<T>): Promise<T> {
  const dir = imagesRoot();
  return withDirLock({ dir, lockfilePath: path.join(dir, "build.lock"), staleMs: 60_000, log: progress, holder: "another image build" }, fn);
}

export interface EnsureImagesOptions {
  /** Only these images (names from the catalog); default all. */
  only?: string[];
  /** Rebuild layers and images even when cached. */
  rebuild?: boolean;
  /** Progress lines; default stderr. */
  log?: Log;
}

/**
 * Every image of the catalog as an OCI archive in the cache, built only when its inputs changed.
 * Images whose inputs are missing (toolchain artifact not built yet) are skipped with the reason.
 */
export async function ensureImages(opts: EnsureImagesOptions = {}): Promise<ImagesReport> {
  const progress = opts.log ?? ((s: string) => process.stderr.write(`images: ${s}\n`));
  const catalog = imageCatalog(parseManifest(fs.readFileSync(manifestFile, "utf8")));
  const unknown = (opts.only ?? []).filter((n) => !catalog.some((c) => c.name === n));
  if (unknown.length) throw new Error(`unknown image ${unknown.join(", ")}; known: ${catalog.map((c) => c.name).join(", ")}`);
  const specs = opts.only ? catalog.filter((c) => opts.only!.includes(c.name)) : catalog;
  return withImagesLock(progress, async () => {
    const report: ImagesReport = { root: imagesRoot(), images: [], skipped: [], failed: [] };
    const resolver = new Resolver();
    const builder = builderDigest();
    for (const [i, spec] of specs.entries()) {
      const started = Date.now();
      const head = `[${i + 1}/${specs.length}] ${spec.name}`;
      let plan: Plan;
      try {
        plan = await planImage(spec, resolver, builder);
      } catch (e) {
        const message = (e as Error).message;
        if (e instanceof MissingInput) report.skipped.push({ name: spec.name, reason: message });
        else report.failed.push({ name: spec.name, error: message });
        progress(`${head}: ${e instanceof MissingInput ? "skipped" : "FAILED"}: ${message}`);
        continue;
      }
      const cached = !opts.rebuild && cachedResult(plan);
      if (cached) {
        report.images.push(cached);
        progress(`${head} ${cached.ref}: cached, ${mib(cached.size)} (${seconds(started)} s)`);
        continue;
      }
      fs.mkdirSync(logDir(), { recursive: true });
      const logFile = path.join(logDir(), `image-${spec.name}-${new Date().toISOString().replace(/[:.]/g, "-")}.log`);
      progress(`${head} ${refString(plan.ref)}: building (log ${logFile})`);
      try {
        const r = await buildImage(plan, resolver, logFile, progress, !!opts.rebuild);
        report.images.push(r);
        progress(`${head} ${r.ref}: built in ${seconds(started)} s, ${mib(r.size)}`);
      } catch (e) {
        const error = (e as Error).message;
        fs.appendFileSync(logFile, `FAILED: ${(e as Error).stack ?? error}\n`);
        report.failed.push({ name: spec.name, error, log: logFile });
        progress(`${head}: FAILED after ${seconds(started)} s: ${error} (log ${logFile})`);
      }
    }
    pruneLayers();
    return report;
  });
}

/** What the Pulumi program needs of each image. */
export type LabImages = Record<
  string,
  {
    /** The reference pods use, e.g. k8slab.local/coredns:v1.15.0 (never pulled: loaded into containerd). */
    ref: string;
    /** The OCI archive on this machine and its sha256: a changed archive is loaded again. */
    archive: string;
    sha256: string;
    /** What `ctr images ls` shows for it: a node that lists ref@manifestDigest has it already. */
    manifestDigest: string;
  }
>;

const labImagesFile = () => path.join(imagesRoot(), "images.json");

/** Record the images `up` just ensured, for the Pulumi program (which runs in another process) to read. */
export function writeLabImages(images: ImageResult[]): LabImages {
  const out: LabImages = Object.fromEntries(
    images.map((i) => [i.name, { ref: i.ref, archive: i.archive, sha256: i.sha256, manifestDigest: i.manifestDigest }]),
  );
  fs.mkdirSync(imagesRoot(), { recursive: true });
  const tmp = `${labImagesFile()}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(out, null, 2)}\n`);
  fs.renameSync(tmp, labImagesFile());
  return out;
}

/** The images last recorded by writeLabImages; {} before the first `up`. */
export function readLabImages(): LabImages {
  return readJson<LabImages>(labImagesFile()) ?? {};
}

function printReport(r: ImagesReport, out: (s: string) => void) {
  const w = Math.max(0, ...r.images.map((i) => i.ref.length));
  for (const i of r.images) out(`ok  ${i.ref.padEnd(w)}  ${mib(i.size).padStart(10)}  sha256:${i.sha256.slice(0, 16)}  ${i.archive}`);
  for (const s of r.skipped) out(`--  ${s.name}: skipped: ${s.reason}`);
  for (const f of r.failed) out(`!!  ${f.name}: ${f.error} (log ${f.log})`);
  out(`load on a node with: ctr -n k8s.io images import ARCHIVE`);
}

async function main() {
  const { values } = parseArgs({ options: { json: { type: "boolean" }, only: { type: "string" }, rebuild: { type: "boolean" } }, strict: true });
  const report = await ensureImages({ only: values.only?.split(",").filter(Boolean), rebuild: values.rebuild });
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else printReport(report, (s) => process.stdout.write(`${s}\n`));
  // Exit 1 when an image is missing, so `up` and CI do not go on without it.
  process.exitCode = report.skipped.length || report.failed.length ? EXIT.failed : EXIT.ok;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((e) => {
    process.stderr.write(`images: ${(e as Error).message}\n`);
    process.exitCode = EXIT.invalid;
  });
}

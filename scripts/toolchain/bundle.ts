// The bundle's record of what it holds (bundle.json) and the pure comparison of that
// record, and of the files on disk, with the manifest: what is complete, what must be built.
import { readFile, rename, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { sha256File } from "../files.ts";
import { type Artifact, artifactOutputs, type Manifest } from "./manifest.ts";

export { sha256File };

const ArtifactRecord = z.object({
  version: z.string(),
  buildKey: z.string(),
  /** sha256 of every file the artifact put into the bundle, by bundle-relative path. */
  files: z.record(z.string(), z.string()),
  builtAt: z.string(),
  durationMs: z.number(),
  /** Largest resident set of any process of the build, when /usr/bin/time was there to say. */
  peakRssKiB: z.number().optional(),
  go: z.string(),
});

const BundleState = z.object({
  layout: z.literal(1),
  /** Digest of the manifest the bundle was last completed against. */
  manifestDigest: z.string().optional(),
  artifacts: z.record(z.string(), ArtifactRecord),
  /** Set while an artifact is being built; still set after a crash or an interrupt. */
  building: z.object({ name: z.string(), pid: z.number(), startedAt: z.string() }).optional(),
});

export type ArtifactRecord = z.infer<typeof ArtifactRecord>;
export type BundleState = z.infer<typeof BundleState>;

export const emptyState = (): BundleState => ({ layout: 1, artifacts: {} });

export async function readState(file: string): Promise<BundleState> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return emptyState();
    throw e;
  }
  const parsed = BundleState.safeParse(JSON.parse(text));
  // A record we cannot read is treated as no record: everything gets verified or rebuilt.
  return parsed.success ? parsed.data : emptyState();
}

/** Every bundle file's sha256 as bundle.json records it, by bundle path (bin/kubelet). */
export const recordedFiles = (state: BundleState): Record<string, string> => Object.assign({}, ...Object.values(state.artifacts).map((a) => a.files));

/** Write-then-rename, so a reader or a crash never sees half a file. */
export async function writeState(file: string, state: BundleState): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`);
  await rename(tmp, file);
}

/** What is on disk for each file the state records: its sha256, or null when missing. */
export type DiskFacts = Record<string, string | null>;

export async function hashRecordedFiles(bundleDir: string, state: BundleState, statCache?: string): Promise<DiskFacts> {
  const facts: DiskFacts = {};
  const files = new Set(Object.values(state.artifacts).flatMap((r) => Object.keys(r.files)));
  // With statCache: a file whose size, mtime and inode are what they were when it was last hashed keeps that hash
  // (every `up` checks the bundle; rehashing its ~1 GiB took ~2 s). Without: every file is read (`toolchain --check`).
  const before: Record<string, { stat: string; sha256: string }> = statCache ? await readJsonOr(statCache, {}) : {};
  const after: typeof before = {};
  for (const rel of files) {
    const abs = path.join(bundleDir, rel);
    try {
      const s = await stat(abs);
      const id = `${s.size}:${s.mtimeMs}:${s.ino}`;
      facts[rel] = before[rel]?.stat === id ? before[rel].sha256 : await sha256File(abs);
      after[rel] = { stat: id, sha256: facts[rel] };
    } catch {
      facts[rel] = null;
    }
  }
  if (statCache) await writeFile(statCache, `${JSON.stringify(after)}\n`).catch(() => undefined);
  return facts;
}

async function readJsonOr<T>(file: string, fallback: T): Promise<T> {
  try {
    return JSON.parse(await readFile(file, "utf8")) as T;
  } catch {
    return fallback;
  }
}

export type ArtifactStatus =
  | { state: "ok" }
  | { state: "building"; pid: number }
  | { state: "missing" }
  | { state: "interrupted" }
  | { state: "stale"; was: string; now: string }
  | { state: "corrupt"; files: string[] };

export interface ArtifactCheck {
  name: string;
  version: string;
  status: ArtifactStatus;
}

/**
 * Compares the manifest with the bundle's record and the files on disk. Pure: the caller
 * supplies build keys (they depend on the Go toolchain) and the hashes of what is on disk.
 */
export function checkBundle(
  manifest: Manifest,
  state: BundleState,
  keys: Record<string, string>,
  disk: DiskFacts,
  /** Whether the process named in `state.building` is still running (a build in progress). */
  builderAlive = false,
): ArtifactCheck[] {
  return manifest.artifacts.map((a) => ({ name: a.name, version: a.version, status: statusOf(a, state, keys[a.name], disk, builderAlive) }));
}

function statusOf(a: Artifact, state: BundleState, key: string | undefined, disk: DiskFacts, builderAlive: boolean): ArtifactStatus {
  if (state.building?.name === a.name) return builderAlive ? { state: "building", pid: state.building.pid } : { state: "interrupted" };
  const rec = state.artifacts[a.name];
  if (!rec) return { state: "missing" };
  if (rec.buildKey !== key || rec.version !== a.version) {
    return { state: "stale", was: `${rec.version} (${rec.buildKey})`, now: `${a.version} (${key})` };
  }
  const expected = artifactOutputs(a);
  const bad = expected.filter((f) => !rec.files[f] || disk[f] !== rec.files[f]);
  return bad.length ? { state: "corrupt", files: bad } : { state: "ok" };
}

export function isComplete(checks: ArtifactCheck[]): boolean {
  return checks.every((c) => c.status.state === "ok");
}

/** Artifacts to build, in manifest order (which is also dependency order: the CLI before plugins). */
export function toBuild(checks: ArtifactCheck[]): ArtifactCheck[] {
  return checks.filter((c) => c.status.state !== "ok");
}

/** Whether a process id is running on this machine (signal 0 only checks). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function describeStatus(s: ArtifactStatus): string {
  switch (s.state) {
    case "ok":
      return "ok";
    case "missing":
      return "not built";
    case "building":
      return `being built now (pid ${s.pid})`;
    case "interrupted":
      return "interrupted build";
    case "stale":
      return `pin changed: ${s.was} -> ${s.now}`;
    case "corrupt":
      return `checksum mismatch or missing: ${s.files.join(", ")}`;
  }
}

/** Records a finished artifact; drops records of artifacts the manifest no longer has. */
export function recordBuilt(state: BundleState, manifest: Manifest, name: string, rec: ArtifactRecord): BundleState {
  const known = new Set(manifest.artifacts.map((a) => a.name));
  const artifacts = Object.fromEntries(Object.entries(state.artifacts).filter(([n]) => known.has(n) && n !== name));
  artifacts[name] = rec;
  const { building, ...rest } = state;
  return building && building.name !== name ? { ...rest, artifacts, building } : { ...rest, artifacts };
}

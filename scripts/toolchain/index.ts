// `k8slab toolchain [--check] [--json]`: builds what the offline bundle lacks, or verifies
// it, against scripts/toolchain/versions.yaml. Also the entry point other commands use.

import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { EXIT, exitOnSignal } from "../../core/exit.ts";
import { withDirLock } from "../files.ts";
import { claimSignals } from "../signals.ts";
import { BuildError, buildArtifact, formatDuration, localSourceDigest, stopActiveBuild } from "./build.ts";
import {
  type ArtifactCheck,
  type BundleState,
  checkBundle,
  describeStatus,
  hashRecordedFiles,
  isComplete,
  processAlive,
  readState,
  recordBuilt,
  toBuild,
  writeState,
} from "./bundle.ts";
import { ensureGo, goPresent } from "./golang.ts";
import { type Artifact, buildKey, type Manifest, manifestDigest, parseManifest, pluginVersion } from "./manifest.ts";
import { bundleDir, bundleStatCache, cacheRoot, goCacheDir, logDir, manifestFile, repoRoot, stateFile } from "./paths.ts";

export { bundleBinDir, bundleDir, cacheRoot, pulumiBinDir, pulumiEnv, pulumiHome } from "./paths.ts";

export async function loadManifest(file = manifestFile): Promise<Manifest> {
  return parseManifest(await readFile(file, "utf8"));
}

/** Build keys of every artifact: its pins, the pinned Go (the only Go that builds), its local source. */
async function buildKeys(manifest: Manifest): Promise<Record<string, string>> {
  const keys: Record<string, string> = {};
  for (const a of manifest.artifacts) keys[a.name] = buildKey(a, manifest.go.version, a.local ? await localSourceDigest(a.local) : "");
  return keys;
}

/**
 * A plugin is only usable offline if the npm package asks for exactly its version: the
 * engine looks the plugin up by the version in the package's package.json.
 */
export async function npmPluginMismatches(manifest: Manifest): Promise<string[]> {
  const problems: string[] = [];
  for (const a of manifest.artifacts) {
    if (!a.plugin) continue;
    const pkgJson = path.join(repoRoot, "node_modules", a.plugin.npmPackage, "package.json");
    if (!existsSync(pkgJson)) continue; // npm install not run yet; the bundle itself is still fine
    const wanted = JSON.parse(await readFile(pkgJson, "utf8"))?.pulumi?.version;
    if (wanted !== pluginVersion(a)) {
      problems.push(`${a.plugin.npmPackage} asks for ${a.plugin.name} plugin ${wanted}, the manifest pins ${pluginVersion(a)}`);
    }
  }
  return problems;
}

export interface ToolchainReport {
  cache: string;
  bundle: string;
  bundleVersion: string;
  /** The pinned Go, and whether it is unpacked in the cache (needed only to build). */
  go: { version: string; present: boolean };
  complete: boolean;
  problems: string[];
  artifacts: {
    name: string;
    version: string;
    status: string;
    detail: string;
    files: Record<string, string>;
    builtAt?: string;
    durationMs?: number;
    peakRssKiB?: number;
  }[];
}

export async function inspect(
  manifest: Manifest,
  opts: { rehash?: boolean } = {},
): Promise<{ report: ToolchainReport; checks: ArtifactCheck[]; state: BundleState; keys: Record<string, string> }> {
  const state = await readState(stateFile());
  const keys = await buildKeys(manifest);
  const disk = await hashRecordedFiles(bundleDir(), state, opts.rehash ? undefined : bundleStatCache());
  const builderAlive = !!state.building && state.building.pid !== process.pid && processAlive(state.building.pid);
  const checks = checkBundle(manifest, state, keys, disk, builderAlive);
  const problems = await npmPluginMismatches(manifest);
  const report: ToolchainReport = {
    cache: cacheRoot(),
    bundle: bundleDir(),
    bundleVersion: manifestDigest(manifest),
    go: { version: manifest.go.version, present: goPresent(manifest.go) },
    complete: isComplete(checks) && problems.length === 0,
    problems,
    artifacts: checks.map((c) => {
      const rec = state.artifacts[c.name];
      return {
        name: c.name,
        version: c.version,
        status: c.status.state,
        detail: describeStatus(c.status),
        files: rec?.files ?? {},
        builtAt: rec?.builtAt,
        durationMs: rec?.durationMs,
        peakRssKiB: rec?.peakRssKiB,
      };
    }),
  };
  return { report, checks, state, keys };
}

export function printReport(r: ToolchainReport, out: (s: string) => void): void {
  out(
    `toolchain bundle ${r.bundleVersion} at ${r.bundle}, built with ${r.go.version} (${r.go.present ? "in the cache" : "fetched when something is to build"})`,
  );
  const width = Math.max(...r.artifacts.map((a) => a.name.length));
  for (const a of r.artifacts) {
    const mark = a.status === "ok" ? "ok " : "-- ";
    out(`  ${mark} ${a.name.padEnd(width)}  ${a.version.padEnd(12)} ${a.detail}`);
  }
  for (const p of r.problems) out(`  !! ${p}`);
  out(r.complete ? "complete" : "incomplete: run `npx k8slab toolchain` to build what is missing");
}

/** Takes the cache lock (a crashed holder's goes stale after 30 s), waiting and saying so while another run holds it. */
export function withCacheLock<T>(log: (s: string) => void, fn: () => Promise<T>): Promise<T> {
  const dir = cacheRoot();
  return withDirLock({ dir, lockfilePath: path.join(dir, "toolchain.lock"), staleMs: 30_000, log, holder: "another toolchain build" }, fn);
}

export interface EnsureOptions {
  /** Progress lines (stderr by default). */
  log?: (s: string) => void;
}

/**
 * Builds every artifact that is missing, stale, corrupt or was interrupted, one at a time,
 * recording each as soon as it is installed so a later run resumes after the last one.
 * Returns true when the bundle is complete.
 */
export async function ensureToolchain(opts: EnsureOptions = {}): Promise<boolean> {
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const manifest = await loadManifest();
  const mismatches = await npmPluginMismatches(manifest);
  if (mismatches.length) {
    for (const m of mismatches) log(`toolchain: ${m}`);
    return false;
  }
  return withCacheLock(log, async () => {
    const { checks, keys } = await inspect(manifest);
    let state = await readState(stateFile());
    const todo = toBuild(checks);
    // A complete bundle (built here, or imported with --import) needs no Go.
    if (!todo.length) return true;
    await ensureGo(manifest.go, log);
    const go = manifest.go.version;
    await mkdir(bundleDir(), { recursive: true });
    await mkdir(logDir(), { recursive: true });
    log(`toolchain: ${todo.length} of ${checks.length} artifacts to build into ${bundleDir()} (Go caches in ${goCacheDir()})`);
    const total = Date.now();
    const failed: string[] = [];
    // On Ctrl-C or a kill, stop the compiler too and leave the in-progress mark: the next run
    // reports the artifact as interrupted and builds it again; finished ones stay done.
    const onSignal = (sig: NodeJS.Signals) => {
      log(`toolchain: ${sig}, stopping; a re-run resumes where this one stopped`);
      stopActiveBuild();
      process.exit(exitOnSignal(sig));
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    const unclaim = claimSignals(); // this handler decides, not the CLI's default
    for (const [i, c] of todo.entries()) {
      const artifact = manifest.artifacts.find((a) => a.name === c.name) as Artifact;
      if (artifact.plugin && failed.includes("pulumi")) {
        log(`[${i + 1}/${todo.length}] ${artifact.name}: skipped, it is registered with the pulumi CLI, which failed`);
        failed.push(artifact.name);
        continue;
      }
      const tag = `[${i + 1}/${todo.length}] ${artifact.name} ${artifact.version}`;
      const stamp = new Date().toISOString().replace(/[:.]/g, "-");
      const logFile = path.join(logDir(), `${artifact.name}-${stamp}.log`);
      log(`${tag}: ${describeStatus(c.status)}; building (log ${logFile})`);
      state = { ...state, building: { name: artifact.name, pid: process.pid, startedAt: new Date().toISOString() } };
      await writeState(stateFile(), state);
      const started = Date.now();
      const elapsed = () => formatDuration(Date.now() - started);
      const heartbeat = setInterval(() => log(`      ${artifact.name}: still building (${elapsed()})`), 60_000);
      try {
        const result = await buildArtifact({ artifact, logFile, note: (m) => log(`      ${artifact.name}: ${m} (${elapsed()})`) });
        const durationMs = Date.now() - started;
        state = recordBuilt(state, manifest, artifact.name, {
          version: artifact.version,
          buildKey: keys[artifact.name],
          files: result.files,
          builtAt: new Date().toISOString(),
          durationMs,
          peakRssKiB: result.peakRssKiB,
          go,
        });
        await writeState(stateFile(), state);
        const rss = result.peakRssKiB ? `, peak RSS ${(result.peakRssKiB / 1024 / 1024).toFixed(2)} GiB` : "";
        log(`${tag}: done in ${formatDuration(durationMs)}${rss}`);
        for (const f of result.updatedWrapperFiles) log(`      ${artifact.name}: updated ${f} (commit it)`);
      } catch (e) {
        const logPath = e instanceof BuildError ? e.logFile : logFile;
        log(`${tag}: FAILED after ${elapsed()}: ${(e as Error).message}`);
        log(await logTail(logPath, 30));
        log(`full log: ${logPath}; a re-run resumes with ${artifact.name}`);
        // A failure is not an interrupt: clear the mark so the next run says "not built"/"pin changed".
        const { building: _done, ...rest } = state;
        state = rest;
        await writeState(stateFile(), state);
        // Go on with the others: one bad pin should not hold back the rest of the bundle.
        failed.push(artifact.name);
      } finally {
        clearInterval(heartbeat);
      }
    }
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    unclaim();
    if (failed.length) {
      log(`toolchain: ${failed.length} of ${todo.length} failed (${failed.join(", ")}) after ${formatDuration(Date.now() - total)}`);
      return false;
    }
    state = { ...state, manifestDigest: manifestDigest(manifest) };
    await writeState(stateFile(), state);
    log(`toolchain: built ${todo.length} artifacts in ${formatDuration(Date.now() - total)}`);
    return true;
  });
}

async function logTail(file: string, lines: number): Promise<string> {
  try {
    const text = await readFile(file, "utf8");
    return text
      .trimEnd()
      .split("\n")
      .slice(-lines)
      .map((l) => `    | ${l}`)
      .join("\n");
  } catch {
    return "    (no log)";
  }
}

/** Is every artifact built and intact? (Reads only what changed since the last check.) */
export async function bundleComplete(): Promise<boolean> {
  return (await inspect(await loadManifest())).report.complete;
}

/** The CLI entry: exit code 0 when the bundle is complete (and, without --check, after building it). */
export async function toolchainCommand(opts: { check: boolean; json: boolean }): Promise<number> {
  const manifest = await loadManifest();
  if (!opts.check) {
    const ok = await ensureToolchain();
    if (!ok && !opts.json) return EXIT.failed;
  }
  // The command that verifies the bundle reads every byte.
  const { report } = await inspect(manifest, { rehash: true });
  if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else printReport(report, (s) => process.stdout.write(`${s}\n`));
  return report.complete ? EXIT.ok : EXIT.failed;
}

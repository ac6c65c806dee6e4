// Builds one artifact of the bundle from the Go module proxy: wrapper module, tidy,
// go build with the pinned ldflags, then an atomic install into the bundle.
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { $ } from "zx";
import { sha256File } from "./bundle.ts";
import { parseGoMod, renderWrapperGoMod, type UpstreamGoMod } from "./gomod.ts";
import { type Artifact, expandLdflags, modulePin, pluginInstallPath, pluginVersion, sha256Hex, type VersionFacts } from "./manifest.ts";
import { bundleDir, goCacheDir, goRootDir, pulumiBinDir, pulumiHome, repoRoot, workDir, wrapperSourceDir } from "./paths.ts";

/** Environment of every go command: k8slab's own Go (golang.ts), caches inside the toolchain cache, static, reproducible. */
export function goEnv(extraNoSumDb: string[] = [], cgo = false): Record<string, string> {
  const go = goCacheDir();
  const noSumDb = [process.env.GONOSUMDB, ...extraNoSumDb].filter(Boolean).join(",");
  return {
    ...(process.env as Record<string, string>),
    PATH: [path.join(goRootDir(), "bin"), process.env.PATH ?? ""].join(path.delimiter),
    GOROOT: goRootDir(),
    GOMODCACHE: path.join(go, "mod"),
    GOCACHE: path.join(go, "build"),
    GOPATH: path.join(go, "path"),
    // -modcacherw: the module cache can be deleted without chmod; -trimpath: no local paths in binaries.
    GOFLAGS: "-trimpath -modcacherw -buildvcs=false",
    CGO_ENABLED: cgo ? "1" : "0",
    GOTOOLCHAIN: "local",
    GOWORK: "off",
    ...(noSumDb ? { GONOSUMDB: noSumDb } : {}),
  };
}

/** Digest of a local source folder, so editing the pause program rebuilds it. */
export async function localSourceDigest(dir: string): Promise<string> {
  const abs = path.join(repoRoot, dir);
  const names = (await readdir(abs)).sort();
  const parts: string[] = [];
  for (const n of names) {
    const f = path.join(abs, n);
    if ((await stat(f)).isFile()) parts.push(`${n}:${sha256Hex(await readFile(f))}`);
  }
  return sha256Hex(parts.join("\n"));
}

export interface BuildContext {
  artifact: Artifact;
  logFile: string;
  /** Progress lines for the terminal (phase names with elapsed time). */
  note: (msg: string) => void;
}

export interface BuildResult {
  files: Record<string, string>;
  peakRssKiB?: number;
  /** Wrapper files that changed in the repo (go.mod/go.sum); the lead commits them. */
  updatedWrapperFiles: string[];
}

/** Thrown when a command of the build fails; carries the log so the caller can show its tail. */
export class BuildError extends Error {
  constructor(
    message: string,
    readonly logFile: string,
  ) {
    super(message);
  }
}

const hasGnuTime = existsSync("/usr/bin/time");

let activeChild: ChildProcess | undefined;

/** Kills the command a build is running (on Ctrl-C), with everything it started. */
export function stopActiveBuild(): void {
  const child = activeChild;
  if (!child?.pid) return;
  try {
    process.kill(-child.pid, "SIGTERM"); // its own process group: go and the compilers it runs
  } catch {
    child.kill("SIGTERM");
  }
}

/**
 * Runs a command with its output appended to the build log. Not zx: a Kubernetes build
 * prints a lot, and zx keeps all output in memory; here it streams to the file.
 */
async function runLogged(ctx: BuildContext, cmd: string, args: string[], opts: { cwd: string; env: Record<string, string> }): Promise<void> {
  const log = createWriteStream(ctx.logFile, { flags: "a" });
  log.write(`\n$ (cd ${opts.cwd} && ${cmd} ${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(" ")})\n`);
  // GNU time reports the peak RSS of the biggest process the command ran (the compiler or
  // linker); its report goes next to the log, so the log's tail stays the command's own output.
  const [file, argv] = hasGnuTime ? ["/usr/bin/time", ["-v", "-a", "-o", rusageFile(ctx.logFile), cmd, ...args]] : [cmd, args];
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn(file, argv, { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    activeChild = child;
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
    child.on("error", reject);
    child.on("close", (c) => resolve(c ?? 1));
  }).finally(() => {
    activeChild = undefined;
  });
  await new Promise<void>((resolve) => log.end(resolve));
  if (code !== 0) {
    const what = [path.basename(cmd), args[0], args.length > 1 ? args[args.length - 1] : ""].filter(Boolean).join(" ");
    throw new BuildError(`${what} exited with ${code}`, ctx.logFile);
  }
}

/** Where GNU time's resource report for a build log goes. */
export const rusageFile = (logFile: string) => `${logFile.replace(/\.log$/, "")}.rusage`;

export function peakRssFromLog(text: string): number | undefined {
  const values = [...text.matchAll(/Maximum resident set size \(kbytes\): (\d+)/g)].map((m) => Number(m[1]));
  return values.length ? Math.max(...values) : undefined;
}

interface Downloaded {
  goMod: string;
  dir: string;
  info: VersionFacts;
}

async function downloadModule(ctx: BuildContext, mod: string, version: string, env: Record<string, string>, cwd: string): Promise<Downloaded> {
  const out = await $({ quiet: true, nothrow: true, cwd, env })`go mod download -json ${`${mod}@${version}`}`;
  await writeFile(ctx.logFile, `\n$ go mod download -json ${mod}@${version}\n${out.stdout}${out.stderr}`, { flag: "a" });
  let j: { Error?: string; GoMod?: string; Info?: string; Dir?: string };
  try {
    j = JSON.parse(out.stdout);
  } catch {
    throw new BuildError(`go mod download ${mod}@${version} failed: ${out.stderr.trim().split("\n").pop()}`, ctx.logFile);
  }
  if (j.Error || !j.GoMod) throw new BuildError(`cannot fetch ${mod}@${version}: ${j.Error ?? "no go.mod"}`, ctx.logFile);
  const info = j.Info ? JSON.parse(await readFile(j.Info, "utf8")) : {};
  return { goMod: await readFile(j.GoMod, "utf8"), dir: j.Dir ?? "", info: { commit: info.Origin?.Hash, time: info.Time } };
}

/** Builds the artifact's binaries into its work dir and installs them into the bundle. */
export async function buildArtifact(ctx: BuildContext): Promise<BuildResult> {
  const a = ctx.artifact;
  const work = workDir(a.name);
  await rm(work, { recursive: true, force: true });
  const outDir = path.join(work, "out");
  await mkdir(outDir, { recursive: true });
  const env = goEnv(a.noSumDb, a.cgo);
  if (a.cgo && !(await $({ quiet: true, nothrow: true })`command -v cc`).stdout.trim()) {
    throw new BuildError(`${a.name} needs a C compiler and static libc (apt-get install gcc libc6-dev)`, ctx.logFile);
  }
  const updatedWrapperFiles: string[] = [];

  let moduleDir: string;
  let facts: VersionFacts = {};
  let mainSourceDir = "";
  if (a.local) {
    moduleDir = path.join(repoRoot, a.local);
  } else {
    moduleDir = path.join(work, "wrapper");
    await mkdir(moduleDir, { recursive: true });
    ctx.note("fetching module metadata");
    const upstream: UpstreamGoMod[] = [];
    for (const [mod, version] of [[a.module!, modulePin(a)], ...Object.entries(a.also)]) {
      const d = await downloadModule(ctx, mod, version, env, work);
      upstream.push(parseGoMod(d.goMod));
      if (mod === a.module) {
        facts = d.info;
        mainSourceDir = d.dir;
      }
    }
    const goMod = renderWrapperGoMod(a, upstream);
    await writeFile(path.join(moduleDir, "go.mod"), goMod);
    const committedSum = path.join(wrapperSourceDir(a.name), "go.sum");
    if (existsSync(committedSum)) await copyFile(committedSum, path.join(moduleDir, "go.sum"));
    for (const g of a.generate) {
      ctx.note(`generating in ${g.dir}`);
      await runGenerate(ctx, moduleDir, g, env);
    }
    ctx.note("resolving dependencies (go mod tidy)");
    await runLogged(ctx, "go", ["mod", "tidy"], { cwd: moduleDir, env });
    updatedWrapperFiles.push(...(await syncWrapperBack(a.name, moduleDir)));
  }

  const ldflags = expandLdflags(a.ldflags, a.version, facts);
  for (const p of a.packages) {
    const started = Date.now();
    ctx.note(`compiling ${path.basename(p.out)}`);
    const bin = path.join(outDir, path.basename(p.out));
    const tags = a.tags.length ? [`-tags=${a.tags.join(",")}`] : [];
    await runLogged(ctx, "go", ["build", ...tags, `-ldflags=-s -w -buildid= ${ldflags}`.trim(), "-o", bin, p.pkg], { cwd: moduleDir, env });
    ctx.note(`compiled ${path.basename(p.out)} in ${formatDuration(Date.now() - started)}`);
  }

  for (const f of a.files) {
    const from = path.join(a.local ? moduleDir : mainSourceDir, f.from);
    await copyFile(from, path.join(outDir, path.basename(f.out)));
  }

  const files: Record<string, string> = {};
  if (a.plugin) {
    ctx.note(`registering plugin ${a.plugin.kind} ${a.plugin.name} ${pluginVersion(a)}`);
    const bin = path.join(outDir, path.basename(a.packages[0].out));
    const pulumi = path.join(pulumiBinDir(), "pulumi");
    const penv = { ...process.env, PULUMI_HOME: pulumiHome(), PULUMI_SKIP_UPDATE_CHECK: "true" } as Record<string, string>;
    await rm(path.join(pulumiHome(), "plugins", `${a.plugin.kind}-${a.plugin.name}-${a.version}`), { recursive: true, force: true });
    await runLogged(ctx, pulumi, ["plugin", "install", a.plugin.kind, a.plugin.name, pluginVersion(a), "--file", bin], { cwd: work, env: penv });
    const rel = pluginInstallPath(a);
    files[rel] = await sha256File(path.join(bundleDir(), rel));
  } else {
    for (const out of [...a.packages.map((p) => p.out), ...a.files.map((f) => f.out)]) {
      const target = path.join(bundleDir(), out);
      await mkdir(path.dirname(target), { recursive: true });
      const tmp = `${target}.${process.pid}.tmp`;
      await copyFile(path.join(outDir, path.basename(out)), tmp);
      await rename(tmp, target);
      files[out] = await sha256File(target);
    }
  }
  const peakRssKiB = peakRssFromLog(await readFile(rusageFile(ctx.logFile), "utf8").catch(() => ""));
  await rm(work, { recursive: true, force: true });
  return { files, peakRssKiB, updatedWrapperFiles };
}

/**
 * Files a module's release is built with but that its published module lacks (generated,
 * git-ignored). They are made from files of the same module: the module is copied out of the
 * read-only cache, the generator runs there, and the wrapper builds the copy instead.
 */
async function runGenerate(ctx: BuildContext, moduleDir: string, g: { dir: string; run: string }, env: Record<string, string>): Promise<void> {
  const a = ctx.artifact;
  const src = path.join(path.dirname(moduleDir), "src");
  if (!existsSync(src)) {
    const dir = (await $({ quiet: true, cwd: moduleDir, env })`go mod download -json ${`${a.module}@${modulePin(a)}`}`).stdout;
    await $({ quiet: true })`cp -r ${JSON.parse(dir).Dir} ${src} && chmod -R u+w ${src}`;
    // The copy replaces the module: same code, plus the generated files.
    await writeFile(path.join(moduleDir, "go.mod"), `${await readFile(path.join(moduleDir, "go.mod"), "utf8")}\nreplace ${a.module} => ../src\n`);
  }
  const cwd = path.join(src, g.dir);
  // WRAPPER: the module to build generators in (the copy's own go.mod points at siblings we lack).
  const genEnv = { ...env, VERSION: a.version.replace(/^v/, ""), WRAPPER: moduleDir };
  await runLogged(ctx, "bash", ["-c", g.run], { cwd, env: genEnv });
}

/** Copies a changed wrapper go.mod/go.sum back into the repo; returns the repo paths it wrote. */
async function syncWrapperBack(name: string, moduleDir: string): Promise<string[]> {
  const target = wrapperSourceDir(name);
  await mkdir(target, { recursive: true });
  const written: string[] = [];
  for (const f of ["go.mod", "go.sum"]) {
    const from = path.join(moduleDir, f);
    if (!existsSync(from)) continue;
    let body = await readFile(from, "utf8");
    // The generate step points the wrapper at a local copy; the committed go.mod does not.
    if (f === "go.mod") body = `${body.replace(/\nreplace \S+ => \.\.\/src\n?/, "\n").trimEnd()}\n`;
    const to = path.join(target, f);
    const old = existsSync(to) ? await readFile(to, "utf8") : null;
    if (old !== body) {
      await writeFile(to, body);
      written.push(path.relative(repoRoot, to));
    }
  }
  return written;
}

export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

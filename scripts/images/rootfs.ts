// Builds one layer's directory tree: a trimmed Debian trixie rootfs from debootstrap and/or files placed into it.
// This file and oci.ts are the builder: their text is part of every layer's cache key (build.ts).
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { $ } from "zx";
import { MIRROR, SUITE } from "../machines/image-build.ts";
import { cacheRoot } from "../toolchain/paths.ts";

export { MIRROR, SUITE };
export const KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";

/** Where a file comes from; build.ts turns each into a path and a sha256 (or says what is missing). */
export type Source =
  /** A file of the toolchain bundle (relative to bundleDir()), recorded in bundle.json under artifact. */
  | { bundle: string; artifact: string }
  /** A file in the repository (relative to its root). */
  | { repo: string }
  /** The esbuild bundle of a workload, made by workloads/build.ts. */
  | { workload: string };

export type FileSpec =
  /** prepend: text put before the file's content (a line an upstream template lacks for Debian). */
  | { path: string; from: Source; mode?: number; prepend?: string }
  | { path: string; text: string; mode?: number }
  | { path: string; dir: true; mode?: number }
  | { path: string; symlink: string };

export interface LayerSpec {
  /** Names the cached layer and its history entry: "node-runtime", "toolbox-rootfs". */
  name: string;
  /** debootstrap --variant=minbase of SUITE with these packages; trimmed (trimDebian) after files and checks. */
  debian?: { packages: string[] };
  /** Paths (inside the tree) removed after trimming: a default site, an empty conf.d's content. */
  remove?: string[];
  files?: FileSpec[];
  /** Commands run in the finished tree with chroot (Debian layers only); the build fails if one fails. */
  checks?: string[][];
}

export type Log = (line: string) => void;

const CHROOT_ENV = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/root", LANG: "C.UTF-8" };

async function debootstrap(root: string, packages: string[], log: Log): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("a Debian layer needs root (debootstrap and chroot)");
  // The .deb cache is the node image's (scripts/machines): one download serves both.
  const debs = path.join(cacheRoot(), "debs");
  fs.mkdirSync(debs, { recursive: true });
  const args = ["--variant=minbase", `--cache-dir=${debs}`];
  if (fs.existsSync(KEYRING)) args.push(`--keyring=${KEYRING}`);
  if (packages.length) args.push(`--include=${packages.join(",")}`);
  log(`debootstrap ${args.join(" ")} ${SUITE} ${root} ${MIRROR}`);
  const r = await $`debootstrap ${args} ${SUITE} ${root} ${MIRROR}`.nothrow().quiet();
  log(r.stdout + r.stderr);
  if (r.exitCode !== 0) {
    const tail = (r.stdout + r.stderr).trim().split("\n").slice(-15).join("\n");
    throw new Error(`debootstrap failed (exit ${r.exitCode}):\n${tail}`);
  }
}

/** Empty a directory but keep it (and its mode): /dev, /run, /tmp are mount points in a container. */
function emptyDir(dir: string, filesOnly = false) {
  if (!fs.existsSync(dir)) return;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (filesOnly && e.isDirectory()) emptyDir(p, true);
    else fs.rmSync(p, { recursive: true, force: true });
  }
}

/**
 * Drop what a container never uses, and what would differ between two builds or leak the build
 * host: docs, man pages, translations, apt lists and caches, logs, device nodes, host identity.
 */
export function trimDebian(root: string): void {
  const r = (p: string) => path.join(root, p);
  // Licences stay (usr/share/doc/*/copyright); the rest of the docs go.
  for (const pkg of fs.existsSync(r("usr/share/doc")) ? fs.readdirSync(r("usr/share/doc")) : []) {
    const d = r(`usr/share/doc/${pkg}`);
    if (!fs.lstatSync(d).isDirectory()) continue;
    for (const e of fs.readdirSync(d)) if (e !== "copyright") fs.rmSync(path.join(d, e), { recursive: true, force: true });
  }
  for (const d of ["usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian", "var/lib/apt/lists", "var/cache/apt", "var/cache/debconf"]) {
    emptyDir(r(d));
  }
  for (const f of ["var/cache/ldconfig/aux-cache", "var/lib/dpkg/status-old", "var/lib/dpkg/available-old", "var/lib/dpkg/diversions-old"])
    fs.rmSync(r(f), { force: true });
  // Log files only: daemons (nginx) open their compiled-in log paths before reading config, so the directories stay.
  emptyDir(r("var/log"), true);
  // The runtime mounts /dev, /proc, /sys, /run and /tmp, and bind-mounts hosts, hostname and resolv.conf.
  for (const d of ["dev", "proc", "sys", "run", "tmp", "var/tmp"]) emptyDir(r(d));
  fs.writeFileSync(r("etc/resolv.conf"), "");
  fs.writeFileSync(r("etc/hostname"), "localhost\n");
  fs.writeFileSync(r("etc/hosts"), "127.0.0.1\tlocalhost\n::1\tlocalhost\n");
  fs.writeFileSync(r("etc/machine-id"), "");
  // The mirror used to build is not part of the image (it may be a local one).
  fs.writeFileSync(r("etc/apt/sources.list"), `deb http://deb.debian.org/debian ${SUITE} main\n`);
}

/** Place one file spec under root; parents are created root-style (0755). */
function placeFile(root: string, f: FileSpec, pathOf: (s: Source) => string) {
  const to = path.join(root, f.path);
  if (!to.startsWith(`${root}/`)) throw new Error(`${f.path}: outside the tree`);
  const parent = path.dirname(to);
  const first = fs.mkdirSync(parent, { recursive: true });
  // mkdir honours the umask; the layer must not. Only the directories made here are changed.
  if (first) for (let d = parent; d.length >= first.length; d = path.dirname(d)) fs.chmodSync(d, 0o755);
  if ("dir" in f) {
    fs.mkdirSync(to, { recursive: true }); // an existing directory keeps its content
    return fs.chmodSync(to, f.mode ?? 0o755);
  }
  fs.rmSync(to, { force: true });
  if ("symlink" in f) return fs.symlinkSync(f.symlink, to);
  if ("text" in f) fs.writeFileSync(to, f.text);
  else if (f.prepend) fs.writeFileSync(to, f.prepend + fs.readFileSync(pathOf(f.from), "utf8"));
  else fs.copyFileSync(pathOf(f.from), to);
  fs.chmodSync(to, f.mode ?? ("from" in f ? fs.statSync(pathOf(f.from)).mode & 0o7777 : 0o644));
}

/** Build spec's tree into root (which must not exist). */
export async function stageTree(spec: LayerSpec, root: string, pathOf: (s: Source) => string, log: Log): Promise<{ installed?: string[] }> {
  fs.mkdirSync(path.dirname(root), { recursive: true });
  if (spec.debian) await debootstrap(root, spec.debian.packages, log);
  else fs.mkdirSync(root);
  fs.chmodSync(root, 0o755);
  for (const p of spec.remove ?? []) fs.rmSync(path.join(root, p), { recursive: true, force: true });
  for (const f of spec.files ?? []) placeFile(root, f, pathOf);
  for (const argv of spec.checks ?? []) {
    if (!spec.debian) throw new Error(`${spec.name}: checks need a Debian tree to run in`);
    // No shell and a clean environment: the build host's shell start-up files must not run in the tree.
    const r = await new Promise<{ exit: number | string; output: string }>((resolve) =>
      execFile("chroot", [root, ...argv], { env: CHROOT_ENV, timeout: 120_000 }, (err, stdout, stderr) =>
        resolve({ exit: err ? ((err as { code?: number | string }).code ?? err.signal ?? "error") : 0, output: `${stdout}${stderr}` }),
      ),
    );
    log(`check: ${argv.join(" ")} -> exit ${r.exit}\n${r.output}`);
    if (r.exit !== 0) throw new Error(`${spec.name}: check \`${argv.join(" ")}\` failed (exit ${r.exit}): ${r.output.trim().slice(-500)}`);
  }
  if (!spec.debian) return {};
  // Trimmed last, so what the checks left in /tmp or /var/log goes too.
  trimDebian(root);
  const q = await $`dpkg-query --admindir=${path.join(root, "var/lib/dpkg")} -W -f=${"${Package} ${Version}\n"}`.quiet();
  return { installed: q.stdout.trim().split("\n") };
}

// The one way a command reads or writes a file it was given (a lab or room file, a snapshot, an
// archive, a JUnit / HTML / pcap / snapshot output) or keeps in its state folder. What is not a
// regular file (a directory, FIFO, socket, device) or cannot be reached (a symlink loop) is refused
// before it is opened: opening a FIFO blocks in a synchronous call no signal ends. Text is read
// within a size cap and must be UTF-8 without NUL bytes; an archive is checked the same way, without
// a cap, and read by tar.
// Outputs are written to a new file beside the target, then renamed over it.
import fs from "node:fs";
import path from "node:path";

/** Why a file was not read or written, `path: reason` (with the flag or argument that named it, when given). */
export class FileRefused extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
    /** The flag or argument that named the file (`--junit`, `BASELINE`): the CLI puts it first. */
    readonly label?: string,
  ) {
    super(`${label ? `${label} ` : ""}${file}: ${reason}`);
  }
}

/** What kind of file an input is: how a refusal names it, and what is allowed in it. */
export interface InputKind {
  /** How a reason names it: "a lab file". */
  noun: string;
  /** What it is: "YAML" (a lab file is a YAML file). */
  format: string;
  /** Bigger is refused before anything is read; none for an archive. */
  maxBytes?: number;
}

const MiB = 1024 * 1024;
/** Far above any lab file (the reference lab is 3 KiB); a bigger file is not one. */
export const LAB_FILE: InputKind = { noun: "a lab file", format: "YAML", maxBytes: MiB };
export const ROOM_FILE: InputKind = { noun: "a room file", format: "YAML", maxBytes: MiB };
/** A scenario of the catalog (scenarios/*.yaml). */
export const SCENARIO_FILE: InputKind = { noun: "a scenario file", format: "YAML", maxBytes: MiB };
/** The reference lab's snapshot is 36 KiB. */
export const SNAPSHOT_FILE: InputKind = { noun: "a snapshot", format: "YAML", maxBytes: 16 * MiB };
/** `k8slab toolchain --export`'s archive: a zstd tar of several GiB. */
export const ARCHIVE_FILE: InputKind = { noun: "a k8slab archive", format: "zstd tar" };
/** FILE.sha256 beside an archive: one line. */
export const CHECKSUM_FILE: InputKind = { noun: "a checksum file", format: "text", maxBytes: 64 * 1024 };
/** An archive's index: one line per file it holds. */
export const ARCHIVE_INDEX: InputKind = { noun: "an archive index", format: "JSON", maxBytes: 256 * MiB };
/** A small record k8slab keeps in a state or run folder (the scenario applied, a lock's holder). */
export const STATE_FILE: InputKind = { noun: "a k8slab state file", format: "JSON", maxBytes: MiB };

/** Why a path cannot be reached, from the error stat or open gave. */
function errnoReason(err: NodeJS.ErrnoException, verb: "read" | "written"): string {
  switch (err.code) {
    case "ENOENT":
      return "no such file";
    case "ELOOP":
      return "is a symlink loop";
    case "EACCES":
    case "EPERM":
      return `cannot be ${verb} (permission denied)`;
    case "EROFS":
      return `cannot be ${verb} (a read-only file system)`;
    case "ENOTDIR":
      return "no such file (a folder on its path is a file)";
    case "ENAMETOOLONG":
      return "the path is too long";
    case "EISDIR":
      return "is a directory";
    default:
      return `cannot be ${verb} (${err.code ?? err.message})`;
  }
}

/** The errors that say the path is wrong (bad input, exit 2), not that the host failed (ENOSPC, EIO: exit 1). */
const PATH_ERRORS = new Set(["ENOENT", "ELOOP", "EACCES", "EPERM", "EROFS", "ENOTDIR", "ENAMETOOLONG", "EISDIR", "ENXIO"]);

/** What an input is, by stat (which follows symlinks and never opens): a problem, or its size. */
function inspectInput(file: string, kind: InputKind): { reason: string } | { size: number } {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file); // follows symlinks: a loop is ELOOP
  } catch (err) {
    return { reason: errnoReason(err as NodeJS.ErrnoException, "read") };
  }
  if (stat.isDirectory()) return { reason: `is a directory, not ${kind.noun}` };
  if (!stat.isFile()) return { reason: `is not a regular file (a FIFO, socket or device): ${kind.noun} is a ${kind.format} file` };
  if (kind.maxBytes !== undefined && stat.size > kind.maxBytes) return { reason: `is ${stat.size} bytes: ${kind.noun} is at most ${kind.maxBytes} bytes` };
  return { size: stat.size };
}

/** Why the input cannot be read, or undefined when it is a regular file within its cap: for what another program reads (tar, zstd). */
export function checkInput(file: string, kind: InputKind): string | undefined {
  const seen = inspectInput(file, kind);
  return "reason" in seen ? seen.reason : undefined;
}

/** Throws FileRefused unless the input is a regular file within its cap. */
export function assertInput(file: string, kind: InputKind, label?: string): void {
  const reason = checkInput(file, kind);
  if (reason) throw new FileRefused(file, reason, label);
}

/** A file's bytes, or why not: checked before it is opened, opened without blocking, read no further than its cap. */
function readBytes(file: string, kind: InputKind): Buffer | { reason: string } {
  const seen = inspectInput(file, kind);
  if ("reason" in seen) return seen;
  let fd: number;
  try {
    // O_NONBLOCK: were it swapped for a FIFO since the stat, the open still returns at once.
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (err) {
    return { reason: errnoReason(err as NodeJS.ErrnoException, "read") };
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) return { reason: `is not a regular file (a FIFO, socket or device): ${kind.noun} is a ${kind.format} file` };
    const limit = kind.maxBytes ?? Number.MAX_SAFE_INTEGER;
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(Math.max(stat.size - total, 0) + 1, limit + 1 - total, 8 * MiB));
      const n = fs.readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
      total += n;
      if (total > limit) return { reason: `is over ${limit} bytes: ${kind.noun} is at most ${limit} bytes` };
    }
    return Buffer.concat(chunks, total);
  } catch (err) {
    return { reason: errnoReason(err as NodeJS.ErrnoException, "read") };
  } finally {
    fs.closeSync(fd);
  }
}

/** A text file's contents, or why it is not one: not a regular file, over its cap, binary, or not UTF-8. */
export function readText(file: string, kind: InputKind): string | { reason: string } {
  const bytes = readBytes(file, kind);
  if (!Buffer.isBuffer(bytes)) return bytes;
  if (bytes.includes(0)) return { reason: `is binary (it holds NUL bytes): ${kind.noun} is ${kind.format} text` };
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { reason: "is not UTF-8 text" };
  }
}

/** readText, throwing FileRefused (`[label ]path: reason`) instead of returning why. */
export function readInputText(file: string, kind: InputKind, label?: string): string {
  const text = readText(file, kind);
  if (typeof text !== "string") throw new FileRefused(file, text.reason, label);
  return text;
}

/** A file that may be absent (a record in a state folder): its text, undefined when nothing is there, else FileRefused. */
export function readOptionalText(file: string, kind: InputKind, label?: string): string | undefined {
  try {
    fs.lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
  }
  return readInputText(file, kind, label);
}

/**
 * Why a file cannot be written at this path, or undefined: the target, if there, must be a regular
 * file (through its symlink, which must lead somewhere), and its folder must exist.
 */
export function checkOutput(file: string): string | undefined {
  let link: fs.Stats;
  try {
    link = fs.lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") return errnoReason(err as NodeJS.ErrnoException, "written");
    return checkFolder(path.dirname(path.resolve(file)));
  }
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return link.isSymbolicLink() && e.code === "ENOENT" ? "is a symlink to nothing (its target does not exist)" : errnoReason(e, "written");
  }
  if (stat.isDirectory()) return "is a directory: name a file to write";
  if (!stat.isFile()) return "is not a regular file (a FIFO, socket or device): k8slab writes a regular file there";
  return undefined;
}

/** Why the folder cannot hold a new file, or undefined. */
function checkFolder(dir: string): string | undefined {
  try {
    if (!fs.statSync(dir).isDirectory()) return `${dir} is not a folder`;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return e.code === "ENOENT" || e.code === "ENOTDIR" ? `its folder ${dir} does not exist` : `its folder ${dir} ${errnoReason(e, "written")}`;
  }
  return undefined;
}

/** Why files cannot be written into this folder (created when missing, as with mkdir -p), or undefined. */
export function checkOutputDir(dir: string): string | undefined {
  try {
    if (!fs.statSync(dir).isDirectory()) return "is not a folder: k8slab writes files into it";
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code !== "ENOENT") return errnoReason(e, "written");
    // Missing: the nearest folder above that exists must be a folder (mkdir -p makes the rest).
    const parent = path.dirname(path.resolve(dir));
    return parent === path.resolve(dir) ? "no such folder" : checkOutputDir(parent);
  }
  return undefined;
}

/** Throws FileRefused unless a file can be written at this path. */
export function assertOutput(file: string, label?: string): void {
  const reason = checkOutput(file);
  if (reason) throw new FileRefused(file, reason, label);
}

/** Throws FileRefused unless files can be written into this folder (made later, when missing). */
export function assertOutputDir(dir: string, label?: string): void {
  const reason = checkOutputDir(dir);
  if (reason) throw new FileRefused(dir, reason, label);
}

/** The folder, made when missing (mkdir -p), after checking it is one; throws FileRefused otherwise. */
export function outputDir(dir: string, label?: string): string {
  assertOutputDir(dir, label);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Where the output really goes: through a symlink to its target (which stays a symlink). */
function outputTarget(file: string, label?: string): { target: string; mode?: number } {
  assertOutput(file, label);
  let target = path.resolve(file);
  try {
    if (fs.lstatSync(target).isSymbolicLink()) target = fs.realpathSync(target);
    return { target, mode: fs.statSync(target).mode & 0o7777 };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { target };
    throw asRefusal(err, file, label);
  }
}

/** A path error while writing is the input's (exit 2); anything else (a full disk) stays a failure. */
function asRefusal(err: unknown, file: string, label?: string): unknown {
  const e = err as NodeJS.ErrnoException;
  return e?.code && PATH_ERRORS.has(e.code) ? new FileRefused(file, errnoReason(e, "written"), label) : err;
}

/** A new private folder beside the target, the file to make in it, and the rename that puts it in place. */
function beginOutput(file: string, label?: string): { tmp: string; commit(): void; cleanup(): void } {
  const { target, mode } = outputTarget(file, label);
  let work: string;
  try {
    work = fs.mkdtempSync(path.join(path.dirname(target), ".k8slab-write-"));
  } catch (err) {
    throw asRefusal(err, file, label);
  }
  const tmp = path.join(work, path.basename(target));
  return {
    tmp,
    commit() {
      if (mode !== undefined) fs.chmodSync(tmp, mode);
      assertOutput(target, label); // still a file (or nothing): rename would replace a FIFO, and fail on a folder
      fs.renameSync(tmp, target);
    },
    cleanup: () => fs.rmSync(work, { recursive: true, force: true }),
  };
}

/**
 * Writes an output through `produce`, which makes the file at the path it is given (in a new
 * private folder beside the target): the target is checked before and replaced whole after, so a
 * failure leaves it as it was. An existing target keeps its mode; a symlink stays one.
 */
export async function writeOutputWith(file: string, produce: (tmp: string) => Promise<void>, label?: string): Promise<void> {
  const out = beginOutput(file, label);
  try {
    await produce(out.tmp);
    out.commit();
  } finally {
    out.cleanup();
  }
}

/** Writes an output file whole (to a new file, renamed over the target); refuses a target that is not a regular file. */
export function writeOutput(file: string, data: string | Uint8Array, label?: string): void {
  const out = beginOutput(file, label);
  try {
    fs.writeFileSync(out.tmp, data, { flag: "wx" });
    out.commit();
  } finally {
    out.cleanup();
  }
}

// Reads a lab file from disk for the core's parser, refusing what is not a lab file before reading
// it: a directory, a FIFO or device (reading one could block forever), a symlink loop, a huge or binary file.
import fs from "node:fs";
import path from "node:path";
import { type Lab, type LoadResult, parseLab } from "../core/lab.ts";

/** Far above any lab file (the reference lab is 3 KiB); a bigger file is not one. */
export const LAB_FILE_MAX_BYTES = 1024 * 1024;

const refused = (file: string, reason: string): LoadResult => ({ ok: false, problems: [{ path: file, reason }] });

/** Reads and validates a lab file; every problem found is returned, not just the first. */
export function loadLab(file: string): LoadResult {
  const text = readLabFile(file);
  return typeof text === "string" ? parseLab(text, path.resolve(file)) : refused(file, text.reason);
}

/** A lab (or room) file's text, or why it is not one: checked before anything is read from it. */
export function readLabFile(file: string): string | { reason: string } {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file); // follows symlinks: a loop is ELOOP
  } catch (err) {
    return { reason: statProblem(err as NodeJS.ErrnoException) };
  }
  if (stat.isDirectory()) return { reason: "is a directory, not a lab file" };
  if (!stat.isFile()) return { reason: "is not a regular file (a FIFO, socket or device): a lab file is a YAML file" };
  if (stat.size > LAB_FILE_MAX_BYTES) return { reason: `is ${stat.size} bytes: a lab file is at most ${LAB_FILE_MAX_BYTES} bytes` };
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    return { reason: statProblem(err as NodeJS.ErrnoException) };
  }
  if (bytes.includes(0)) return { reason: "is binary (it holds NUL bytes): a lab file is YAML text" };
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { reason: "is not UTF-8 text" };
  }
}

function statProblem(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case "ENOENT":
      return "no such file";
    case "ELOOP":
      return "is a symlink loop";
    case "EACCES":
    case "EPERM":
      return "cannot be read (permission denied)";
    case "ENOTDIR":
      return "no such file (a folder on its path is a file)";
    case "ENAMETOOLONG":
      return "the path is too long";
    default:
      return `cannot be read (${err.code ?? err.message})`;
  }
}

/** The lab, or undefined after printing its problems on stderr (`path: reason`, a line each): the commands' common start. */
export function labOrProblems(file: string): Lab | undefined {
  const result = loadLab(file);
  if (result.ok) return result.lab;
  for (const p of result.problems) process.stderr.write(`${p.path}: ${p.reason}\n`);
  return undefined;
}

// Reads a lab file from disk for the core's parser, through scripts/user-file.ts, which refuses what
// is not a lab file before reading it: a directory, a FIFO or device (reading one could block
// forever), a symlink loop, a huge or binary file.
import path from "node:path";
import { type Lab, type LoadResult, parseLab } from "../core/lab.ts";
import { LAB_FILE, readText } from "./user-file.ts";

const refused = (file: string, reason: string): LoadResult => ({ ok: false, problems: [{ path: file, reason }] });

/** Reads and validates a lab file; every problem found is returned, not just the first. */
export function loadLab(file: string): LoadResult {
  const text = readLabFile(file);
  return typeof text === "string" ? parseLab(text, path.resolve(file)) : refused(file, text.reason);
}

/** A lab file's text, or why it is not one: checked before anything is read from it (scripts/user-file.ts). */
export function readLabFile(file: string): string | { reason: string } {
  return readText(file, LAB_FILE);
}

/** The lab, or undefined after printing its problems on stderr (`path: reason`, a line each): the commands' common start. */
export function labOrProblems(file: string): Lab | undefined {
  const result = loadLab(file);
  if (result.ok) return result.lab;
  for (const p of result.problems) process.stderr.write(`${p.path}: ${p.reason}\n`);
  return undefined;
}

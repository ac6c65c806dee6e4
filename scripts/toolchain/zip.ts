// Reads a zip archive (the module proxy's format, as Go's archive/zip writes it) into a folder, refusing
// any entry that would land outside it. Only what module zips use: stored and deflated entries, no zip64.
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

export interface ZipEntry {
  name: string;
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

/** The entries listed in the archive's central directory. */
export function zipEntries(zip: Buffer): ZipEntry[] {
  // The end-of-central-directory record is the last 22 bytes, before a comment of at most 64 KiB.
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error("not a zip archive (no end of central directory)");
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  if (count === 0xffff || at === 0xffffffff) throw new Error("zip64 archives are not read here");
  const entries: ZipEntry[] = [];
  for (let n = 0; n < count; n++) {
    if (at + 46 > zip.length || zip.readUInt32LE(at) !== CENTRAL) throw new Error(`zip central directory entry ${n} is damaged`);
    const nameLength = zip.readUInt16LE(at + 28);
    entries.push({
      method: zip.readUInt16LE(at + 10),
      crc32: zip.readUInt32LE(at + 16),
      compressedSize: zip.readUInt32LE(at + 20),
      size: zip.readUInt32LE(at + 24),
      localOffset: zip.readUInt32LE(at + 42),
      name: zip.toString("utf8", at + 46, at + 46 + nameLength),
    });
    at += 46 + nameLength + zip.readUInt16LE(at + 30) + zip.readUInt16LE(at + 32);
  }
  return entries;
}

/** One entry's bytes, inflated and checked against its CRC-32. */
export function zipEntryData(zip: Buffer, e: ZipEntry): Buffer {
  const at = e.localOffset;
  if (at + 30 > zip.length || zip.readUInt32LE(at) !== LOCAL) throw new Error(`${e.name}: local header is damaged`);
  const start = at + 30 + zip.readUInt16LE(at + 26) + zip.readUInt16LE(at + 28);
  const raw = zip.subarray(start, start + e.compressedSize);
  if (raw.length !== e.compressedSize) throw new Error(`${e.name}: truncated`);
  const data = e.method === 0 ? raw : e.method === 8 ? zlib.inflateRawSync(raw) : undefined;
  if (!data) throw new Error(`${e.name}: compression method ${e.method} is not read here`);
  if (data.length !== e.size || zlib.crc32(data) !== e.crc32) throw new Error(`${e.name}: contents do not match the archive's CRC-32`);
  return data;
}

/**
 * Writes every entry under `prefix` (a folder inside the archive) into `dest`, without the prefix.
 * Entries outside the prefix are refused, as is any name with `..`, an absolute path or a backslash.
 * Returns the relative names written.
 */
export function unzipTo(zip: Buffer, dest: string, prefix: string): string[] {
  const written: string[] = [];
  for (const e of zipEntries(zip)) {
    if (!e.name.startsWith(prefix)) throw new Error(`${e.name}: outside ${prefix}`);
    const rel = e.name.slice(prefix.length);
    if (!rel) continue;
    if (rel.startsWith("/") || rel.includes("\\") || rel.split("/").includes("..")) throw new Error(`${e.name}: not a path inside the archive`);
    const file = path.join(dest, rel);
    if (rel.endsWith("/")) {
      fs.mkdirSync(file, { recursive: true });
      continue;
    }
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, zipEntryData(zip, e), { mode: 0o644 });
    written.push(rel);
  }
  return written;
}

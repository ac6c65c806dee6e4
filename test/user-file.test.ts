// scripts/user-file.ts: the one way a command reads or writes a file it was given. What is not a
// regular file is refused before it is opened; an output is written beside its target and renamed.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type TestContext, test } from "node:test";
import {
  ARCHIVE_FILE,
  checkInput,
  checkOutput,
  checkOutputDir,
  FileRefused,
  type InputKind,
  outputDir,
  readInputText,
  readOptionalText,
  readText,
  writeOutput,
  writeOutputWith,
} from "../scripts/user-file.ts";

const TEXT: InputKind = { noun: "a test file", format: "YAML", maxBytes: 64 };

function files(t: TestContext) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-user-file-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const at = (name: string) => path.join(dir, name);
  execFileSync("mkfifo", [at("fifo")]);
  fs.mkdirSync(at("folder"));
  fs.symlinkSync(at("loop-b"), at("loop-a"));
  fs.symlinkSync(at("loop-a"), at("loop-b"));
  fs.symlinkSync(at("nothing"), at("dangling"));
  fs.writeFileSync(at("text"), "name: x\n");
  fs.symlinkSync(at("text"), at("link"));
  return { dir, at };
}

/** Whatever is left beside the outputs: a temp folder a write forgot. */
const leftovers = (dir: string) => fs.readdirSync(dir).filter((n) => n.startsWith(".k8slab-write-"));

test("an input is read only when it is a regular UTF-8 text file within its cap: each refusal says why", (t) => {
  const { at } = files(t);
  fs.writeFileSync(at("big"), "x".repeat(65));
  fs.writeFileSync(at("nul"), Buffer.from([0x61, 0x00, 0x62]));
  fs.writeFileSync(at("latin1"), Buffer.from("caf\xe9\n", "latin1"));
  const read = (f: string) => readText(f, TEXT);
  assert.equal(read(at("text")), "name: x\n");
  assert.equal(read(at("link")), "name: x\n", "a symlink is followed");
  assert.deepEqual(read(at("fifo")), { reason: "is not a regular file (a FIFO, socket or device): a test file is a YAML file" });
  assert.deepEqual(read("/dev/zero"), { reason: "is not a regular file (a FIFO, socket or device): a test file is a YAML file" });
  assert.deepEqual(read(at("folder")), { reason: "is a directory, not a test file" });
  assert.deepEqual(read(at("loop-a")), { reason: "is a symlink loop" });
  assert.deepEqual(read(at("dangling")), { reason: "no such file" });
  assert.deepEqual(read(at("big")), { reason: "is 65 bytes: a test file is at most 64 bytes" });
  assert.deepEqual(read(at("nul")), { reason: "is binary (it holds NUL bytes): a test file is YAML text" });
  assert.deepEqual(read(at("latin1")), { reason: "is not UTF-8 text" });
  assert.throws(
    () => readInputText(at("fifo"), TEXT, "--baseline"),
    (e) => e instanceof FileRefused && e.message === `--baseline ${at("fifo")}: is not a regular file (a FIFO, socket or device): a test file is a YAML file`,
  );
});

test("an optional input that is absent is undefined; one that is there but not a file is still refused", (t) => {
  const { at } = files(t);
  assert.equal(readOptionalText(at("absent"), TEXT), undefined);
  assert.equal(readOptionalText(at("text"), TEXT), "name: x\n");
  assert.throws(() => readOptionalText(at("fifo"), TEXT), /is not a regular file/);
  assert.throws(() => readOptionalText(at("dangling"), TEXT), /no such file/);
});

test("an archive is binary and has no cap, but a FIFO, a folder or a loop is still refused", (t) => {
  const { at } = files(t);
  fs.writeFileSync(at("archive"), Buffer.alloc(2 * 1024 * 1024, 0));
  assert.equal(checkInput(at("archive"), ARCHIVE_FILE), undefined);
  assert.match(checkInput(at("fifo"), ARCHIVE_FILE) ?? "", /^is not a regular file/);
  assert.equal(checkInput(at("folder"), ARCHIVE_FILE), "is a directory, not a k8slab archive");
  assert.equal(checkInput(at("loop-a"), ARCHIVE_FILE), "is a symlink loop");
});

test("an output may be new or a regular file (through a symlink); a FIFO, device, folder, loop or missing folder is refused", (t) => {
  const { at } = files(t);
  assert.equal(checkOutput(at("new.xml")), undefined);
  assert.equal(checkOutput(at("text")), undefined);
  assert.equal(checkOutput(at("link")), undefined);
  assert.equal(checkOutput(at("fifo")), "is not a regular file (a FIFO, socket or device): k8slab writes a regular file there");
  assert.equal(checkOutput("/dev/null"), "is not a regular file (a FIFO, socket or device): k8slab writes a regular file there");
  assert.equal(checkOutput(at("folder")), "is a directory: name a file to write");
  assert.equal(checkOutput(at("loop-a")), "is a symlink loop");
  assert.equal(checkOutput(at("dangling")), "is a symlink to nothing (its target does not exist)");
  assert.equal(checkOutput(at("no-such-folder/out.xml")), `its folder ${at("no-such-folder")} does not exist`);
  assert.equal(checkOutput(at("text/out.xml")), "no such file (a folder on its path is a file)");
  // Nothing was written by a refusal.
  assert.throws(
    () => writeOutput(at("fifo"), "x", "--junit"),
    (e) => e instanceof FileRefused && e.label === "--junit",
  );
  assert.equal(fs.statSync(at("fifo")).isFIFO(), true);
  assert.throws(() => writeOutput(at("folder"), "x"), /is a directory/);
  assert.deepEqual(fs.readdirSync(at("folder")), []);
});

test("an output folder may be new or a folder; a FIFO, a file or a loop is refused", (t) => {
  const { at } = files(t);
  assert.equal(checkOutputDir(at("folder")), undefined);
  assert.equal(checkOutputDir(at("new/deeper")), undefined);
  assert.equal(checkOutputDir(at("fifo")), "is not a folder: k8slab writes files into it");
  assert.equal(checkOutputDir(at("text")), "is not a folder: k8slab writes files into it");
  assert.equal(checkOutputDir(at("loop-a")), "is a symlink loop");
  assert.equal(checkOutputDir(at("text/below")), "no such file (a folder on its path is a file)");
  assert.equal(outputDir(at("new/deeper")), at("new/deeper"));
  assert.equal(fs.statSync(at("new/deeper")).isDirectory(), true);
  assert.throws(
    () => outputDir(at("fifo"), "--pcap"),
    (e) => e instanceof FileRefused && e.message === `--pcap ${at("fifo")}: is not a folder: k8slab writes files into it`,
  );
});

test("an output replaces its target whole: its mode kept, a symlink still a symlink, no temp file left", (t) => {
  const { dir, at } = files(t);
  fs.chmodSync(at("text"), 0o600);
  writeOutput(at("link"), "new\n");
  assert.equal(fs.lstatSync(at("link")).isSymbolicLink(), true, "the symlink stays");
  assert.equal(fs.readFileSync(at("text"), "utf8"), "new\n", "its target is replaced");
  assert.equal(fs.statSync(at("text")).mode & 0o777, 0o600, "the target's mode is kept");
  writeOutput(at("fresh.xml"), Buffer.from("<x/>"));
  assert.equal(fs.readFileSync(at("fresh.xml"), "utf8"), "<x/>");
  assert.deepEqual(leftovers(dir), []);
});

test("an output made by another program is renamed into place only when it succeeds", async (t) => {
  const { dir, at } = files(t);
  await writeOutputWith(at("archive"), async (tmp) => {
    assert.equal(fs.existsSync(tmp), false, "the program gets a path that does not exist yet");
    assert.notEqual(path.dirname(tmp), dir, "in a private folder beside the target");
    fs.writeFileSync(tmp, "made");
  });
  assert.equal(fs.readFileSync(at("archive"), "utf8"), "made");
  await assert.rejects(
    writeOutputWith(at("archive"), async (tmp) => {
      fs.writeFileSync(tmp, "half");
      throw new Error("zstd failed");
    }),
    /zstd failed/,
  );
  assert.equal(fs.readFileSync(at("archive"), "utf8"), "made", "a failure leaves the target as it was");
  await assert.rejects(
    writeOutputWith(at("fifo"), async () => assert.fail("not run for a FIFO")),
    (e) => e instanceof FileRefused,
  );
  assert.deepEqual(leftovers(dir), []);
});

// The soak scripts' pure parts: their command line, and the percentile they report.

import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { soakArgs } from "../scripts/soak/args.ts";
import { percentile } from "../scripts/soak/soak.ts";

const labFile = path.join(import.meta.dirname, "../labs/two-node.yaml");

/** soakArgs with stderr captured. */
function parse(argv: string[], ...rest: [Record<string, string>, string[]?]) {
  const said: string[] = [];
  const error = console.error;
  console.error = (line: string) => void said.push(line);
  try {
    return { args: soakArgs(argv, ...rest), said };
  } finally {
    console.error = error;
  }
}

test("soak args: the lab, numbers with their defaults or as given, and --out", () => {
  const { args, said } = parse([labFile, "--every", "2.5", "--out", "/tmp/x.json"], { hours: "2", every: "5" });
  assert.deepEqual(said, []);
  assert.equal(args?.lab.name, "two-node");
  assert.deepEqual(args?.numbers, { hours: 2, every: 2.5 });
  assert.equal(args?.out, "/tmp/x.json");
});

test("soak args: every bad value is one line naming the option or the lab file's field; nothing is returned", () => {
  const { args, said } = parse(["--runs", "1.5", "--minutes", "0", "test/fixtures/labs/none.yaml"], { runs: "20", minutes: "10" }, ["runs"]);
  assert.equal(args, undefined);
  assert.deepEqual(said.slice(0, 2), ['--runs: a positive whole number, not "1.5"', '--minutes: a positive number, not "0"']);
  assert.match(said[2], /none\.yaml/);
  assert.match(parse(["--bogus"], { runs: "20" }).said[0], /Unknown option '--bogus'/);
  // --out is refused as every output is: a folder, a FIFO, a folder that is not there.
  for (const [out, why] of [
    ["/tmp", /^--out \/tmp: is a directory: name a file to write$/],
    ["/dev/null", /^--out \/dev\/null: is not a regular file/],
    ["/nonexistent/x.json", /^--out \/nonexistent\/x\.json: its folder \/nonexistent does not exist$/],
  ] as const) {
    const refused = parse([labFile, "--out", out], { runs: "20" });
    assert.equal(refused.args, undefined, out);
    assert.match(refused.said.join("\n"), why);
  }
});

test("percentile: nearest rank", () => {
  const xs = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
  assert.deepEqual([percentile(xs, 50), percentile(xs, 95), percentile(xs, 100), percentile([], 95)], [5, 10, 10, 0]);
});

test("the lifecycle bench reads each of up's steps and its seconds", async () => {
  const { stepSeconds } = await import("../scripts/soak/k8slab-run.ts");
  const stderr =
    "• toolchain: the offline bundle ...\n✓ toolchain: the offline bundle (1.4 s)\n✗ probes: x (3.0 s): failed\n✓ pulumi up: create, update or repair the lab (412.5 s)\n";
  assert.deepEqual(stepSeconds(stderr), { "toolchain: the offline bundle": 1.4, "pulumi up: create, update or repair the lab": 412.5 });
});

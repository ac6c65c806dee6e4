// bash started by Node (stdin a socketpair) with SHLVL=0 reads ~/.bashrc; the CLI's first import stops that.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";

const root = path.join(import.meta.dirname, "..");

function bashReadsRc(withGuard: boolean): boolean {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-home-"));
  try {
    fs.writeFileSync(path.join(home, ".bashrc"), 'echo read > "$HOME/marker"\n');
    const script = `${withGuard ? 'await import("./scripts/quiet-bash.ts");' : ""} (await import("node:child_process")).spawnSync("bash", ["-c", "true"], { stdio: "pipe" });`;
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: root,
      env: { ...process.env, HOME: home, SHLVL: "0" },
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    return fs.existsSync(path.join(home, "marker"));
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
}

test("a bash started by Node at SHLVL=0 reads ~/.bashrc, unless scripts/quiet-bash.ts was imported", () => {
  assert.equal(bashReadsRc(false), true, "the rule the guard is for holds on this machine");
  assert.equal(bashReadsRc(true), false);
});

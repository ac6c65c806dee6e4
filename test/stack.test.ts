// A killed `pulumi up` leaves its file-backend lock behind; the next up/down removes it, and only it.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { clearStaleLocks } from "../scripts/stack.ts";

test("clearStaleLocks removes the locks of pulumi processes gone from this host, and keeps the others", async () => {
  const backend = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-state-"));
  try {
    const dir = path.join(backend, ".pulumi", "locks", "organization", "k8slab", "two-node");
    fs.mkdirSync(dir, { recursive: true });
    const gone = spawnSync("true").pid; // a process that has ended
    const lock = (name: string, pid: number, hostname = os.hostname()) => {
      fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify({ pid, username: "root", hostname, timestamp: new Date().toISOString() }));
      fs.writeFileSync(path.join(dir, `${name}.json.attrs`), "{}");
    };
    lock("dead", gone);
    lock("alive", process.pid);
    lock("elsewhere", gone, `${os.hostname()}-other`); // a pid on another host says nothing here

    assert.deepEqual(await clearStaleLocks(backend, "two-node"), [`pid ${gone}`]);
    assert.deepEqual(fs.readdirSync(dir).sort(), ["alive.json", "alive.json.attrs", "elsewhere.json", "elsewhere.json.attrs"]);
    assert.deepEqual(await clearStaleLocks(backend, "other-lab"), [], "another stack's folder is not there: nothing to do");
  } finally {
    fs.rmSync(backend, { recursive: true, force: true });
  }
});

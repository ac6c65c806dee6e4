// A killed `pulumi up` leaves its file-backend lock behind; the next up/down removes it, and only it.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import type { Lab } from "../core/index.ts";
import { clearStaleLocks, secretsPassphrase } from "../scripts/stack.ts";

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

test("each lab's secrets passphrase: random, 0600, kept; an older stack keeps the old one; the user's own wins", async (t) => {
  const state = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-state-"));
  const saved = { state: process.env.K8SLAB_STATE, pass: process.env.PULUMI_CONFIG_PASSPHRASE, file: process.env.PULUMI_CONFIG_PASSPHRASE_FILE };
  process.env.K8SLAB_STATE = state;
  delete process.env.PULUMI_CONFIG_PASSPHRASE;
  delete process.env.PULUMI_CONFIG_PASSPHRASE_FILE;
  t.after(() => {
    for (const [k, v] of [
      ["K8SLAB_STATE", saved.state],
      ["PULUMI_CONFIG_PASSPHRASE", saved.pass],
      ["PULUMI_CONFIG_PASSPHRASE_FILE", saved.file],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    fs.rmSync(state, { recursive: true, force: true });
  });
  const said: string[] = [];
  const lab = (name: string) => ({ name }) as Lab;
  const first = await secretsPassphrase(lab("a"), false, (l) => said.push(l));
  const file = first.PULUMI_CONFIG_PASSPHRASE_FILE;
  assert.equal(file, path.join(state, "labs", "a", "pulumi-passphrase"));
  assert.match(fs.readFileSync(file, "utf8"), /^[0-9a-f]{64}\n$/);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  const content = fs.readFileSync(file, "utf8");
  assert.deepEqual(await secretsPassphrase(lab("a"), true, (l) => said.push(l)), first, "the next `up` reads the same file");
  assert.equal(fs.readFileSync(file, "utf8"), content);
  await secretsPassphrase(lab("b"), false, () => {});
  assert.notEqual(fs.readFileSync(path.join(state, "labs", "b", "pulumi-passphrase"), "utf8"), content, "each lab its own");
  assert.deepEqual(await secretsPassphrase(lab("old"), true, (l) => said.push(l)), { PULUMI_CONFIG_PASSPHRASE: "k8slab" });
  assert.match(said.join("\n"), /old's Pulumi secrets use the old fixed passphrase/);
  process.env.PULUMI_CONFIG_PASSPHRASE_FILE = "/etc/mine";
  assert.deepEqual(await secretsPassphrase(lab("c"), false, () => {}), {});
  assert.equal(fs.existsSync(path.join(state, "labs", "c")), false);
});

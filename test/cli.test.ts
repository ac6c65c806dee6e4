// The k8slab command as a user runs it: exit codes and messages of the contract in DESIGN.md.

import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { type TestContext, test } from "node:test";

const root = path.join(import.meta.dirname, "..");
const bin = path.join(root, "scripts/bin/k8slab.mjs");

function k8slab(...args: string[]) {
  return k8slabIn({}, ...args);
}

function k8slabIn(env: NodeJS.ProcessEnv, ...args: string[]) {
  // process.execPath is the project's Node (npm test puts node_modules/.bin first on PATH).
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: "utf8", timeout: 30_000, env: { ...process.env, ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test("validate accepts the reference lab", () => {
  const r = k8slab("validate", "labs/two-node.yaml");
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /valid lab "two-node", 2 nodes/);
});

test("validate exits 2 with one `path: reason` line per problem", () => {
  const r = k8slab("validate", "test/fixtures/labs/invalid-several-problems.yaml");
  assert.equal(r.code, 2);
  const lines = r.err.trim().split("\n");
  assert.equal(lines.length, 2, r.err);
  assert.match(lines[0], /^name: must be a lowercase RFC 1123 label/);
  assert.match(lines[1], /^ingress\.service: "frontend" is not a workload Service/);
});

test("validate names a missing file", () => {
  const r = k8slab("validate", "labs/nope.yaml");
  assert.equal(r.code, 2);
  assert.equal(r.err.trim(), "labs/nope.yaml: no such file");
});

test("validate without a file is a usage error", () => {
  const r = k8slab("validate");
  assert.equal(r.code, 2);
  assert.match(r.err, /usage: k8slab validate LAB/);
});

test("--help lists every command of the contract", () => {
  const r = k8slab("--help");
  assert.equal(r.code, 0);
  for (const c of ["up", "probe", "down", "status", "validate", "toolchain"]) assert.match(r.out, new RegExp(`^  ${c}\\b`, "m"));
  assert.match(k8slab("probe", "--help").out, /--junit FILE/);
});

test("unknown commands and options are usage errors", () => {
  assert.equal(k8slab("frobnicate").code, 2);
  const r = k8slab("status", "--frobnicate");
  assert.equal(r.code, 2);
  assert.match(r.err, /Unknown option '--frobnicate'/);
});

test("probe rejects an unknown tier with exit 2 and lists the tiers", () => {
  const r = k8slab("probe", "--tier", "dns", "--tier", "nosuch");
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown tier "nosuch"; tiers: underlay, flannel, pod-same-node, pod-cross-node, service, dns, nodeport, ingress, business-flow/);
});

test("probe of a lab that is not up: underlay fails on ssh, the rest is blocked, exit 1; --junit writes the report", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "k8slab-cli-"));
  const junit = path.join(dir, "probe.xml");
  const r = k8slab("probe", "test/fixtures/labs/valid-minimal.yaml", "--json", "--junit", junit);
  const xml = readFileSync(junit, "utf8");
  rmSync(dir, { recursive: true });
  assert.equal(r.code, 1, r.err);
  const report = JSON.parse(r.out);
  assert.equal(report.lab, "mini");
  assert.match(report.results[0].firstBrokenHop, /^ssh to node\d: .*no ssh endpoint/);
  assert.ok(report.results.slice(1).every((t: { verdict: string; blockedBy: string }) => t.verdict === "blocked" && t.blockedBy === "underlay"));
  assert.match(xml, /<testsuites name="k8slab probe" tests="9" failures="1" errors="0" skipped="8"/);
});

test("a command that fails unexpectedly says why in one line, exit 1; the stack trace only with --debug", () => {
  // The lock's folder cannot be made (its parent is a file): not the user's input, the host's.
  const env = { K8SLAB_RUN: "/dev/null/k8slab-run" };
  const args = ["down", "test/fixtures/labs/valid-minimal.yaml"];
  const r = k8slabIn(env, ...args);
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, /^k8slab down: ENOTDIR: not a directory, mkdir '\/dev\/null\/k8slab-run'\n\(run with --debug for the stack trace\)$/m);
  assert.doesNotMatch(r.err, /^\s+at /m, "no stack trace");
  const debug = k8slabIn(env, ...args, "--debug");
  assert.equal(debug.code, 1);
  assert.match(debug.err, /^\s+at /m, "--debug shows it");
});

test("a report's folder that does not exist is bad input: exit 2, one line naming the flag", () => {
  const r = k8slab("probe", "test/fixtures/labs/valid-minimal.yaml", "--tier", "underlay", "--junit", "/nonexistent-k8slab-dir/probe.xml");
  assert.deepEqual([r.code, r.err], [2, "k8slab probe: --junit /nonexistent-k8slab-dir/probe.xml: its folder /nonexistent-k8slab-dir does not exist\n"]);
});

test("validate refuses what is not a lab file at once, exit 2: a FIFO, a device", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "k8slab-cli-"));
  const fifo = path.join(dir, "lab.yaml");
  spawnSync("mkfifo", [fifo]);
  const r = k8slab("validate", fifo);
  const dev = k8slab("validate", "/dev/zero");
  rmSync(dir, { recursive: true });
  assert.deepEqual([r.code, r.err], [2, `${fifo}: is not a regular file (a FIFO, socket or device): a lab file is a YAML file\n`]);
  assert.deepEqual([dev.code, dev.err], [2, "/dev/zero: is not a regular file (a FIFO, socket or device): a lab file is a YAML file\n"]);
});

test("status --json of a lab that was never brought up", () => {
  const r = k8slab("status", "test/fixtures/labs/valid-minimal.yaml", "--json");
  assert.equal(r.code, 0, r.err);
  const status = JSON.parse(r.out);
  assert.equal(status.netns, "k8slab-mini");
  assert.equal(status.netnsExists, false);
  assert.deepEqual(
    status.nodes.map((n: { name: string; address: string; running: boolean }) => [n.name, n.address, n.running]),
    [
      ["node1", "192.168.0.21", false],
      ["node2", "192.168.0.22", false],
    ],
  );
  assert.equal(status.kubeconfig, null);
});

test("commands that take a lab reject an invalid one with exit 2 before doing anything", () => {
  for (const c of ["up", "down", "status"]) {
    const r = k8slab(c, "test/fixtures/labs/invalid-hostgw-port.yaml");
    assert.equal(r.code, 2, c);
    assert.match(r.err, /^pods\.flannel\.port: host-gw does not encapsulate/m);
  }
});

test("toolchain --env prints the exports that run the bundled pulumi offline, with the k8slab plugin on PATH", () => {
  const r = k8slab("toolchain", "--env");
  assert.equal(r.code, 0, r.err);
  const env = Object.fromEntries([...r.out.matchAll(/^export (\w+)=('?)(.*)\2$/gm)].map((m) => [m[1], m[3]]));
  assert.equal(env.PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION, "true");
  assert.match(env.PULUMI_HOME, /bundle-v1\/pulumi\/home$/);
  assert.match(env.PATH.split(":")[1], /infra\/provider\/bin$/);
  assert.match(env.PULUMI_BACKEND_URL, /^file:\/\//);
  assert.equal(env.PULUMI_CONFIG_PASSPHRASE, undefined, "no secret is printed");
  assert.match(r.out, /^# a lab's stack also needs: export PULUMI_CONFIG_PASSPHRASE_FILE=\S+\/labs\/LAB\/pulumi-passphrase/m);
});

test("up or down of a lab another k8slab is changing stops at once with exit 2, naming the holder", async (t) => {
  const run = mkdtempSync(path.join(tmpdir(), "k8slab-run-"));
  t.after(() => rmSync(run, { recursive: true, force: true }));
  const lockfile = (await import("proper-lockfile")).default;
  const release = await lockfile.lock(path.join(run, "mini.lifecycle"), { realpath: false });
  writeFileSync(path.join(run, "mini.lifecycle.holder"), "`k8slab up` pid 4242 since 2026-11-30T05:00:00.000Z\n");
  try {
    const r = spawnSync(process.execPath, [bin, "down", "test/fixtures/labs/valid-minimal.yaml"], {
      cwd: root,
      encoding: "utf8",
      timeout: 30_000,
      env: { ...process.env, K8SLAB_RUN: run },
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(
      r.stderr,
      /^k8slab down: lab mini is being changed right now \(`k8slab up` pid 4242 since 2026-11-30T05:00:00\.000Z\); wait for it to finish, or stop it$/m,
    );
  } finally {
    await release();
  }
});

/** Runs k8slab without waiting on it: for several at once, and for signals. Killed (SIGKILL) if still running after `killAfterMs`. */
function k8slabAsync(env: NodeJS.ProcessEnv, args: string[], opts: { killAfterMs?: number; onStderr?: (err: string, child: ChildProcess) => void } = {}) {
  const started = Date.now();
  const child = spawn(process.execPath, [bin, ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => {
    err += d;
    opts.onStderr?.(err, child);
  });
  const killer = setTimeout(() => child.kill("SIGKILL"), opts.killAfterMs ?? 20_000);
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string; ms: number }>((resolve) => {
    child.once("close", (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, out, err, ms: Date.now() - started });
    });
  });
}

/** A folder with a FIFO, a folder, a symlink loop, a regular file; a cache, state and run folder of the test's own. */
function hostileFiles(t: TestContext) {
  const dir = mkdtempSync(path.join(tmpdir(), "k8slab-files-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const at = (name: string) => path.join(dir, name);
  execFileSync("mkfifo", [at("fifo")]);
  mkdirSync(at("folder"));
  symlinkSync(at("loop-b"), at("loop-a"));
  symlinkSync(at("loop-a"), at("loop-b"));
  writeFileSync(at("regular"), "not an archive\n");
  for (const d of ["cache", "state", "run"]) mkdirSync(at(d));
  return { at, env: { K8SLAB_CACHE: at("cache"), K8SLAB_STATE: at("state"), K8SLAB_RUN: at("run") } };
}

const MINI = "test/fixtures/labs/valid-minimal.yaml";
const SNAPSHOT = "test/fixtures/snapshot/two-node.snapshot.yaml";

/** Every file argument of every command: how it is given, and whether it is read, written, or a folder written into. */
const FILE_ARGS: { command: string; label: string; kind: "input" | "output" | "folder"; args: (file: string) => string[] }[] = [
  { command: "diff", label: "BASELINE", kind: "input", args: (f) => ["diff", f] },
  { command: "diff", label: "CURRENT", kind: "input", args: (f) => ["diff", SNAPSHOT, f] },
  { command: "probe", label: "--baseline", kind: "input", args: (f) => ["probe", MINI, "--baseline", f] },
  ...(["up", "down", "probe", "status"] as const).map((c) => ({ command: c, label: "--room", kind: "input" as const, args: (f: string) => [c, "--room", f] })),
  { command: "toolchain", label: "--import", kind: "input", args: (f) => ["toolchain", "--import", f] },
  { command: "probe", label: "--junit", kind: "output", args: (f) => ["probe", MINI, "--junit", f] },
  { command: "probe", label: "--html", kind: "output", args: (f) => ["probe", MINI, "--html", f] },
  { command: "probe", label: "--pcap", kind: "folder", args: (f) => ["probe", MINI, "--pcap", f] },
  { command: "status", label: "--junit", kind: "output", args: (f) => ["status", "--room", "labs/room.yaml", "--junit", f] },
  { command: "snapshot", label: "--output", kind: "output", args: (f) => ["snapshot", MINI, "-o", f] },
  { command: "diff", label: "--junit", kind: "output", args: (f) => ["diff", SNAPSHOT, SNAPSHOT, "--junit", f] },
  { command: "trace", label: "--html", kind: "output", args: (f) => ["trace", MINI, "node/node1", "node/node2", "--html", f] },
  { command: "trace", label: "--pcap", kind: "folder", args: (f) => ["trace", MINI, "node/node1", "node/node2", "--pcap", f] },
  { command: "toolchain", label: "--export", kind: "output", args: (f) => ["toolchain", "--export", f] },
];

/** What each argument is given, and the reason it must be refused with. */
const HOSTILE: Record<"input" | "output" | "folder", [string, RegExp][]> = {
  input: [
    ["fifo", /is not a regular file \(a FIFO, socket or device\)/],
    ["folder", /is a directory, not a/],
    ["loop-a", /is a symlink loop/],
  ],
  output: [
    ["fifo", /is not a regular file \(a FIFO, socket or device\): k8slab writes a regular file there/],
    ["folder", /is a directory: name a file to write/],
    ["loop-a", /is a symlink loop/],
  ],
  folder: [
    ["fifo", /is not a folder/],
    ["regular", /is not a folder/],
    ["loop-a", /is a symlink loop/],
  ],
};

test("every file a command takes: a FIFO, a folder, a symlink loop is refused at once, exit 2, one line naming the argument", {
  timeout: 300_000,
}, async (t) => {
  const { at, env } = hostileFiles(t);
  const cases = FILE_ARGS.flatMap((a) => HOSTILE[a.kind].map(([name, reason]) => ({ ...a, file: at(name), reason })));
  const failures: string[] = [];
  // Two at a time: the host has two cores.
  const queue = [...cases];
  const worker = async () => {
    for (let c = queue.shift(); c; c = queue.shift()) {
      const r = await k8slabAsync(env, c.args(c.file), { killAfterMs: 30_000 });
      const line = r.err.trimEnd();
      const want = `k8slab ${c.command}: ${c.label} ${c.file}: `;
      const what = `${c.args(c.file).join(" ")}`;
      if (r.code !== 2) failures.push(`${what}: exit ${r.code ?? r.signal} after ${r.ms} ms: ${line}`);
      else if (line.includes("\n") || !line.startsWith(want) || !c.reason.test(line))
        failures.push(`${what}: ${JSON.stringify(line)}, wanted ${want}${c.reason}`);
      else if (r.ms > 15_000) failures.push(`${what}: took ${r.ms} ms`);
    }
  };
  await Promise.all([worker(), worker()]);
  assert.deepEqual(failures, [], `${failures.length} of ${cases.length} cases`);
  assert.deepEqual(readdirSync(at("cache")), [], "nothing was built");
});

test("a lab file argument is refused the same way: a FIFO, a folder, a symlink loop (`path: reason`, exit 2)", (t) => {
  const { at } = hostileFiles(t);
  for (const [name, reason] of HOSTILE.input) {
    const r = k8slab("diff", SNAPSHOT, SNAPSHOT, "--lab", at(name));
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, new RegExp(`^${at(name)}: ${reason.source}`), r.err);
  }
});

for (const [signal, code] of [
  ["SIGTERM", 143],
  ["SIGINT", 130],
] as const) {
  test(`a command blocked in a wait ends on ${signal} with exit ${code}`, { timeout: 60_000 }, async (t) => {
    const { at, env } = hostileFiles(t);
    // Hold the toolchain cache's lock: `toolchain --import` waits for it, its event loop idle.
    const lockfile = (await import("proper-lockfile")).default;
    const release = await lockfile.lock(env.K8SLAB_CACHE, { lockfilePath: path.join(env.K8SLAB_CACHE, "toolchain.lock"), realpath: false });
    t.after(() => release());
    let sent = 0;
    const r = await k8slabAsync(env, ["toolchain", "--import", at("regular")], {
      killAfterMs: 30_000,
      onStderr: (err, child) => {
        if (!/^waiting: /m.test(err) || sent) return;
        sent = Date.now();
        child.kill(signal);
      },
    });
    assert.ok(sent, `it never waited: ${r.err}`);
    assert.deepEqual([r.code, r.signal], [code, null], r.err);
    assert.match(r.err, new RegExp(`^k8slab toolchain: ${signal}: stopped$`, "m"));
    assert.ok(Date.now() - sent < 5000, "it ended at once");
  });
}

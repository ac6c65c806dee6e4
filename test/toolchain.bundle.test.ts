// Bundle state logic: complete, stale, checksum mismatch, interrupted, resume and the cache
// lock, all on fake bundles in temporary directories; nothing is built or downloaded.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { formatDuration, peakRssFromLog } from "../scripts/toolchain/build.ts";
import {
  type BundleState,
  checkBundle,
  describeStatus,
  emptyState,
  hashRecordedFiles,
  isComplete,
  processAlive,
  readState,
  recordBuilt,
  sha256File,
  toBuild,
  writeState,
} from "../scripts/toolchain/bundle.ts";
import { artifactOutputs, buildKey, parseManifest, sha256Hex } from "../scripts/toolchain/manifest.ts";

const manifest = parseManifest(`
layout: 1\ngo: { version: go1.26.8, sha256: { linux-amd64: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa } }
artifacts:
  - name: pause
    local: scripts/toolchain/go/pause
    version: v1.0.0
    packages: [{ pkg: k8slab.local/toolchain/pause, out: bin/pause }]
  - name: crictl
    module: sigs.k8s.io/cri-tools
    version: v1.34.0
    packages: [{ pkg: sigs.k8s.io/cri-tools/cmd/crictl, out: bin/crictl }]
  - name: cni-plugins
    module: github.com/containernetworking/plugins
    version: v1.9.1
    packages:
      - { pkg: github.com/containernetworking/plugins/plugins/main/bridge, out: cni/bin/bridge }
      - { pkg: github.com/containernetworking/plugins/plugins/main/loopback, out: cni/bin/loopback }
`);

const GO = "go1.26.8";
const keysOf = (m = manifest) => Object.fromEntries(m.artifacts.map((a) => [a.name, buildKey(a, GO)]));

/** A state that says every artifact is built, with these file contents. */
function completeState(contents: (file: string) => string, m = manifest): BundleState {
  let state = emptyState();
  for (const a of m.artifacts) {
    const files = Object.fromEntries(artifactOutputs(a).map((f) => [f, sha256Hex(contents(f))]));
    state = recordBuilt(state, m, a.name, { version: a.version, buildKey: buildKey(a, GO), files, builtAt: "2026-11-21T00:00:00Z", durationMs: 1000, go: GO });
  }
  return state;
}

const content = (f: string) => `binary ${f}`;
const diskFor = (state: BundleState, override: Record<string, string | null> = {}) => {
  const disk: Record<string, string | null> = {};
  for (const r of Object.values(state.artifacts)) for (const f of Object.keys(r.files)) disk[f] = sha256Hex(content(f));
  return { ...disk, ...override };
};

describe("checkBundle", () => {
  it("calls a bundle complete when every artifact is recorded with its key and intact files", () => {
    const state = completeState(content);
    const checks = checkBundle(manifest, state, keysOf(), diskFor(state));
    assert.ok(isComplete(checks));
    assert.deepEqual(toBuild(checks), []);
  });

  it("lists missing artifacts of an empty bundle, in manifest order", () => {
    const checks = checkBundle(manifest, emptyState(), keysOf(), {});
    assert.deepEqual(
      toBuild(checks).map((c) => c.name),
      ["pause", "crictl", "cni-plugins"],
    );
    assert.equal(describeStatus(checks[0].status), "not built");
  });

  it("rebuilds only the artifact whose pin changed", () => {
    const state = completeState(content);
    const bumped = parseManifest(
      `layout: 1\ngo: { version: go1.26.8, sha256: { linux-amd64: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa } }\nartifacts:\n${manifest.artifacts
        .map((a) => (a.name === "crictl" ? { ...a, version: "v1.35.0" } : a))
        .map((a) => `  - ${JSON.stringify(a)}`)
        .join("\n")}\n`,
    );
    const checks = checkBundle(bumped, state, keysOf(bumped), diskFor(state));
    const todo = toBuild(checks);
    assert.deepEqual(
      todo.map((c) => c.name),
      ["crictl"],
    );
    assert.equal(todo[0].status.state, "stale");
    assert.match(describeStatus(todo[0].status), /v1\.34\.0 .* -> v1\.35\.0/);
  });

  it("treats a new Go toolchain as a changed pin for every artifact", () => {
    const state = completeState(content);
    const keys = Object.fromEntries(manifest.artifacts.map((a) => [a.name, buildKey(a, "go1.27.0")]));
    assert.equal(toBuild(checkBundle(manifest, state, keys, diskFor(state))).length, 3);
  });

  it("reports a checksum mismatch and a missing file as corrupt, naming the files", () => {
    const state = completeState(content);
    const checks = checkBundle(manifest, state, keysOf(), diskFor(state, { "bin/crictl": sha256Hex("tampered"), "cni/bin/loopback": null }));
    const bad = toBuild(checks);
    assert.deepEqual(
      bad.map((c) => c.name),
      ["crictl", "cni-plugins"],
    );
    assert.deepEqual(bad[1].status, { state: "corrupt", files: ["cni/bin/loopback"] });
    assert.match(describeStatus(bad[0].status), /checksum mismatch.*bin\/crictl/);
  });

  it("reports the artifact a crashed or interrupted run was building, and only that one", () => {
    const state = { ...completeState(content), building: { name: "crictl", pid: 4242, startedAt: "2026-11-21T00:00:00Z" } };
    const todo = toBuild(checkBundle(manifest, state, keysOf(), diskFor(state)));
    assert.deepEqual(
      todo.map((c) => [c.name, c.status.state]),
      [["crictl", "interrupted"]],
    );
  });

  it("tells a build still running in another process from an interrupted one", () => {
    const state = { ...completeState(content), building: { name: "crictl", pid: 4242, startedAt: "2026-11-21T00:00:00Z" } };
    const [, crictl] = checkBundle(manifest, state, keysOf(), diskFor(state), true);
    assert.deepEqual(crictl.status, { state: "building", pid: 4242 });
    assert.match(describeStatus(crictl.status), /being built now \(pid 4242\)/);
    assert.ok(processAlive(process.pid));
  });

  it("resumes after an interrupt: what finished before it stays done", () => {
    // A run built pause, then died while building crictl.
    let state = recordBuilt(emptyState(), manifest, "pause", completeState(content).artifacts.pause);
    state = { ...state, building: { name: "crictl", pid: 1, startedAt: "x" } };
    const todo = toBuild(checkBundle(manifest, state, keysOf(), diskFor(state)));
    assert.deepEqual(
      todo.map((c) => `${c.name}:${c.status.state}`),
      ["crictl:interrupted", "cni-plugins:missing"],
    );
  });
});

describe("recordBuilt", () => {
  it("clears the in-progress mark of the artifact it records and forgets artifacts no longer pinned", () => {
    const full = completeState(content);
    const state = { ...full, artifacts: { ...full.artifacts, retired: full.artifacts.pause }, building: { name: "pause", pid: 1, startedAt: "x" } };
    const next = recordBuilt(state, manifest, "pause", full.artifacts.pause);
    assert.equal(next.building, undefined);
    assert.equal(next.artifacts.retired, undefined);
    assert.ok(next.artifacts.crictl);
  });
});

describe("bundle.json on disk", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "k8slab-bundle-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("round-trips, and an unreadable record counts as no record", async () => {
    const file = path.join(dir, "bundle.json");
    assert.deepEqual(await readState(file), emptyState());
    const state = completeState(content);
    await writeState(file, state);
    assert.deepEqual(await readState(file), state);
    await writeFile(file, JSON.stringify({ layout: 99 }));
    assert.deepEqual(await readState(file), emptyState());
  });

  it("hashes the recorded files as they are on disk (sha256), null when missing", async () => {
    const state = completeState(content);
    await mkdir(path.join(dir, "bin"), { recursive: true });
    await writeFile(path.join(dir, "bin", "pause"), content("bin/pause"));
    await writeFile(path.join(dir, "bin", "crictl"), "half a binary");
    const disk = await hashRecordedFiles(dir, state);
    assert.equal(disk["bin/pause"], sha256Hex(content("bin/pause")));
    assert.equal(disk["bin/pause"], await sha256File(path.join(dir, "bin", "pause")));
    assert.notEqual(disk["bin/crictl"], state.artifacts.crictl.files["bin/crictl"]);
    assert.equal(disk["cni/bin/bridge"], null);
    const bad = toBuild(checkBundle(manifest, state, keysOf(), disk)).map((c) => c.name);
    assert.deepEqual(bad, ["crictl", "cni-plugins"]);
  });

  it("with a stat cache, reads only files whose size, mtime or inode changed since they were hashed", async () => {
    const state = completeState(content);
    await mkdir(path.join(dir, "bin"), { recursive: true });
    await writeFile(path.join(dir, "bin", "pause"), content("bin/pause"));
    const cache = path.join(dir, "stat-cache.json");
    const first = await hashRecordedFiles(dir, state, cache);
    assert.equal(first["bin/pause"], sha256Hex(content("bin/pause")));
    // An unchanged file is not read again: its recorded hash is taken as it is.
    const recorded = JSON.parse(await readFile(cache, "utf8"));
    recorded["bin/pause"].sha256 = "from-the-cache";
    await writeFile(cache, JSON.stringify(recorded));
    assert.equal((await hashRecordedFiles(dir, state, cache))["bin/pause"], "from-the-cache");
    // A rewritten one (another mtime) is.
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(path.join(dir, "bin", "pause"), "tampered");
    assert.equal((await hashRecordedFiles(dir, state, cache))["bin/pause"], sha256Hex("tampered"));
  });
});

describe("the cache lock", () => {
  let cache: string;
  const saved = process.env.K8SLAB_CACHE;
  before(async () => {
    cache = await mkdtemp(path.join(os.tmpdir(), "k8slab-cache-"));
    process.env.K8SLAB_CACHE = cache;
  });
  after(async () => {
    if (saved === undefined) delete process.env.K8SLAB_CACHE;
    else process.env.K8SLAB_CACHE = saved;
    await rm(cache, { recursive: true, force: true });
  });

  it("lets one run at a time in; the second waits and says so", async () => {
    const { withCacheLock } = await import("../scripts/toolchain/index.ts");
    const events: string[] = [];
    const said: string[] = [];
    const first = withCacheLock(
      (s) => said.push(s),
      async () => {
        events.push("first in");
        await new Promise((r) => setTimeout(r, 600));
        events.push("first out");
      },
    );
    await new Promise((r) => setTimeout(r, 100));
    const second = withCacheLock(
      (s) => said.push(s),
      async () => {
        events.push("second in");
      },
    );
    await Promise.all([first, second]);
    assert.deepEqual(events, ["first in", "first out", "second in"]);
    assert.ok(said.some((s) => /waiting: another toolchain build/.test(s)));
    assert.equal(await readFile(path.join(cache, "toolchain.lock"), "utf8").catch(() => "gone"), "gone");
  });
});

describe("build helpers", () => {
  it("finds the largest peak RSS that GNU time reported", () => {
    const log = "\tMaximum resident set size (kbytes): 32124\n...\n\tMaximum resident set size (kbytes): 2211840\n";
    assert.equal(peakRssFromLog(log), 2211840);
    assert.equal(peakRssFromLog("no time here"), undefined);
  });

  it("formats durations for progress lines", () => {
    assert.equal(formatDuration(9_400), "9s");
    assert.equal(formatDuration(754_000), "12m34s");
    assert.equal(formatDuration(3_900_000), "1h05m");
  });
});

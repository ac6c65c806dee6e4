// The repeat harness's pure parts (scripts/soak/repeat.ts): its command line, a cycle's phases and
// trace forms, the verdicts it reads from `probe --json` (a probe run replayed on recorded outputs,
// rendered as the command prints it) and `trace --json`, a phase's judgement, the summary and the
// record's shape; and the script itself on --help and on bad input.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { loadLab } from "../scripts/lab-file.ts";
import { renderJson } from "../scripts/probes/render.ts";
import { runProbes } from "../scripts/probes/runner.ts";
import { type K8slabRun, runK8slab } from "../scripts/soak/k8slab-run.ts";
import {
  type CycleRecord,
  cyclePlan,
  judgePhase,
  median,
  newRecord,
  PHASES,
  type PhaseRecord,
  type PlannedPhase,
  parseRepeatArgs,
  probeVerdict,
  summarize,
  traceForms,
  traceVerdict,
} from "../scripts/soak/repeat.ts";
import { replay } from "./fixtures/probes/replay.ts";
import { faults, healthy, withFault } from "./fixtures/probes/scenarios.ts";

const root = path.join(import.meta.dirname, "..");
const ctFile = path.join(root, "labs/container-two-node.yaml");
const loaded = loadLab(path.join(root, "labs/two-node.yaml"));
assert.ok(loaded.ok);
const lab = loaded.lab;

const problemsOf = (argv: string[]) => {
  const r = parseRepeatArgs(argv);
  assert.ok("ok" in r && !r.ok, JSON.stringify(r));
  return r.problems;
};

test("repeat args: the defaults, and each option as given", () => {
  const d = parseRepeatArgs([]);
  assert.ok("ok" in d && d.ok);
  assert.equal(d.opts.lab.name, "two-node");
  assert.equal(d.opts.cycles, 1);
  assert.deepEqual(d.opts.phases, [...PHASES]);
  assert.equal(d.opts.freshCache, undefined);
  assert.equal(d.opts.out, undefined);

  const archive = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-repeat-")), "toolchain.tar");
  fs.writeFileSync(archive, "");
  try {
    const r = parseRepeatArgs([ctFile, "--cycles", "20", "--phases", "down, up,probe", "--fresh-cache", archive, "--out", "r.json"]);
    assert.ok("ok" in r && r.ok, JSON.stringify(r));
    assert.equal(r.opts.lab.name, "ct-two-node");
    assert.equal(r.opts.cycles, 20);
    assert.deepEqual(r.opts.phases, ["up", "probe", "down"], "in a cycle's order, whatever the order given");
    assert.equal(r.opts.freshCache, archive);
    assert.equal(r.opts.out, path.resolve("r.json"));
    assert.match(problemsOf(["--fresh-cache", archive, "--phases", "up,probe"])[0], /^--fresh-cache: needs the down phase/);
  } finally {
    fs.rmSync(path.dirname(archive), { recursive: true, force: true });
  }
  assert.deepEqual(parseRepeatArgs(["--cycles", "0", "--help"]), { help: true });
  assert.deepEqual(parseRepeatArgs(["-h"]), { help: true });
});

test("repeat args: every problem at once, one line each", () => {
  assert.deepEqual(problemsOf(["--cycles", "2.5", "--phases", "up,bogus,probes"]), [
    '--cycles: a positive whole number, not "2.5"',
    '--phases: "bogus", "probes" not a phase (up, probe, trace, second-up, down)',
  ]);
  assert.deepEqual(problemsOf(["--cycles", "0"]), ['--cycles: a positive whole number, not "0"']);
  assert.deepEqual(problemsOf(["--phases", " , "]), ["--phases: at least one of up, probe, trace, second-up, down"]);
  assert.deepEqual(problemsOf(["--fresh-cache", "/nonexistent/toolchain.tar"]), ["--fresh-cache: no file /nonexistent/toolchain.tar"]);
  assert.deepEqual(problemsOf(["--out", os.tmpdir()]), [`--out ${os.tmpdir()}: is a directory: name a file to write`]);
  assert.match(problemsOf(["--bogus"])[0], /Unknown option '--bogus'/);
  assert.match(problemsOf([ctFile, ctFile])[0], /^one lab file at most, not 2/);
  assert.match(problemsOf(["test/fixtures/labs/none.yaml"]).join("\n"), /none\.yaml/);
});

test("trace forms: pod to pod across the nodes, ClusterIP, NodePort, ingress, DNS, pod to node, in the lab's own names", () => {
  assert.deepEqual(
    traceForms(lab).map((t) => `${t.name}: ${t.from} -> ${t.to}`),
    [
      "pod-to-pod: toolbox/0 -> toolbox/1",
      "clusterip: toolbox -> svc/business-manager",
      "nodeport: client -> nodeport/node2",
      "ingress: client -> ingress",
      "dns: toolbox -> svc/kube-dns",
      "pod-to-node: toolbox/0 -> node/node2",
    ],
  );
});

test("a cycle's plan: down first only for a lab that exists; with a fresh cache, the import first and every phase on that cache", () => {
  const file = path.resolve(lab.file);
  const plain = cyclePlan({ lab, phases: [...PHASES] }, false);
  assert.deepEqual(
    plain.map((p) => p.name),
    ["up", "probe", "trace pod-to-pod", "trace clusterip", "trace nodeport", "trace ingress", "trace dns", "trace pod-to-node", "second-up", "down"],
  );
  assert.deepEqual(plain[1].args, ["probe", file, "--json"]);
  assert.deepEqual(plain[2].args, ["trace", file, "toolbox/0", "toolbox/1", "--json"]);
  assert.ok(plain.every((p) => !p.fresh));
  assert.equal(cyclePlan({ lab, phases: [...PHASES] }, true)[0].name, "clean-down");
  assert.deepEqual(cyclePlan({ lab, phases: ["probe", "trace"] }, true).map((p) => p.name)[0], "probe", "without up the cycle runs on the lab as it is");

  const fresh = cyclePlan({ lab, phases: ["up", "down"], freshCache: "/tmp/t.tar" }, true);
  assert.deepEqual(
    fresh.map((p) => [p.name, p.args.join(" "), p.fresh]),
    [
      ["clean-down", `down ${file}`, false],
      ["import", "toolchain --import /tmp/t.tar", true],
      ["up", `up ${file}`, true],
      ["down", `down ${file}`, true],
    ],
  );
});

test("probe verdicts from `probe --json`: a healthy run, a fault with its first broken hop, and no JSON", async () => {
  const ok = probeVerdict(renderJson(await runProbes(lab, replay(healthy))));
  assert.ok(!("error" in ok));
  assert.equal(ok.ok, true);
  assert.deepEqual(ok.notPassed, []);
  assert.equal(Object.keys(ok.tiers).length, 9);
  assert.ok(Object.values(ok.tiers).every((v) => v === "pass"));
  assert.equal("pace" in ok, false, "a recording has no pace");
  const pace = [{ node: "node1", processStartMs: 136, factor: 4 }];
  const paced = probeVerdict(JSON.stringify({ ...JSON.parse(renderJson(await runProbes(lab, replay(healthy)))), pace }));
  assert.deepEqual("pace" in paced && paced.pace, pace, "how slow the run was is kept");

  const broken = probeVerdict(renderJson(await runProbes(lab, replay(withFault(faults.flanneldStoppedOnNode2)))));
  assert.ok(!("error" in broken));
  assert.equal(broken.ok, false);
  assert.equal(broken.tiers.flannel, "fail");
  assert.match(broken.notPassed[0], /^flannel fail: node2 FDB entry for node1's VTEP/);
  assert.ok(broken.notPassed.includes("service blocked by flannel"), broken.notPassed.join("\n"));

  assert.deepEqual(probeVerdict(""), { error: "no probe report JSON on stdout (empty)" });
  assert.deepEqual(probeVerdict('{"lab":"x"}'), { error: 'no probe report JSON on stdout (it begins "{"lab":"x"}")' });
});

const traceJson = (over: object = {}) =>
  JSON.stringify({
    lab: "two-node",
    from: "client",
    to: "ingress",
    proto: "tcp",
    sent: { where: "client", command: "curl", exitCode: 0, output: "" },
    legs: [
      { name: "client -> nginx", points: [{ verdict: "seen" }, { verdict: "seen" }] },
      { name: "nginx -> backend", points: [{ verdict: "seen" }] },
    ],
    ok: true,
    captured: [],
    ...over,
  });

test("trace verdicts from `trace --json`: points seen, where the packet was lost, the sender's failure", () => {
  assert.deepEqual(traceVerdict(traceJson()), { ok: true, from: "client", to: "ingress", proto: "tcp", seen: 3, points: 3 });
  const lost = traceVerdict(
    traceJson({
      ok: false,
      sent: { where: "pod toolbox-a", command: "ping", exitCode: 1, output: "" },
      legs: [{ name: "there", points: [{ verdict: "seen" }, { verdict: "request only" }, { verdict: "not seen" }] }],
      lost: { after: "node2/flannel.1 (VXLAN)", before: "node2/cni0", state: [] },
    }),
  );
  assert.deepEqual(lost, {
    ok: false,
    from: "client",
    to: "ingress",
    proto: "tcp",
    seen: 1,
    points: 3,
    lost: "after node2/flannel.1 (VXLAN), before node2/cni0",
    sent: "pod toolbox-a: exit 1",
  });
  assert.match((traceVerdict("k8slab trace: ...") as { error: string }).error, /no trace report JSON/);
});

const run = (over: Partial<K8slabRun>): K8slabRun => ({
  args: ["up", "labs/two-node.yaml"],
  startedAt: "2025-01-01T00:00:00.000Z",
  seconds: 12.3,
  exitCode: 0,
  stdout: "",
  stderr: "",
  output: "",
  ...over,
});
const step = (kind: PlannedPhase["kind"], name: string = kind): PlannedPhase => ({ name, kind, args: [], fresh: false });

test("a phase's judgement: exit code, up's steps and changes, a second up that changed something, the verdicts, what down left", () => {
  const upErr = '✓ toolchain: the offline bundle (1.4 s)\n✗ pulumi up: create, update or repair the lab (80.0 s): boom\nlab two-node: {"create":3}\n';
  const up = judgePhase(step("up"), run({ exitCode: 1, stderr: upErr }), "two-node");
  assert.deepEqual(
    { ...up },
    {
      name: "up",
      command: "k8slab up labs/two-node.yaml",
      startedAt: "2025-01-01T00:00:00.000Z",
      seconds: 12.3,
      exitCode: 1,
      ok: false,
      steps: { "toolchain: the offline bundle": 1.4 },
      changes: '{"create":3}',
      reason: "exit 1: ✗ pulumi up: create, update or repair the lab (80.0 s): boom",
    },
  );
  assert.equal(judgePhase(step("up"), run({ stderr: 'lab two-node: {"create":3}\n' }), "two-node").ok, true, "a first up may change anything");
  const again = judgePhase(step("second-up"), run({ stderr: 'lab two-node: {"same":50,"update":1}\n' }), "two-node");
  assert.equal(again.reason, 'changed something: {"same":50,"update":1}');
  assert.equal(judgePhase(step("second-up"), run({ stderr: 'lab two-node: {"same":51}\n' }), "two-node").ok, true);
  assert.equal(judgePhase(step("second-up"), run({}), "two-node").reason, "changed something: (no summary line)");

  const probe = judgePhase(
    step("probe"),
    run({ args: ["probe"], exitCode: 1, stdout: JSON.stringify({ ok: false, results: [{ tier: "dns", verdict: "fail", firstBrokenHop: "dig: timeout" }] }) }),
    "two-node",
  );
  assert.equal(probe.reason, "exit 1: dns fail: dig: timeout");
  const blocked = judgePhase(
    step("probe"),
    run({
      exitCode: 1,
      stdout: JSON.stringify({
        ok: false,
        results: [
          { tier: "underlay", verdict: "fail", firstBrokenHop: "ssh to node1: refused" },
          { tier: "flannel", verdict: "blocked", blockedBy: "underlay" },
          { tier: "dns", verdict: "blocked", blockedBy: "underlay" },
        ],
      }),
    }),
    "two-node",
  );
  assert.equal(blocked.reason, "exit 1: underlay fail: ssh to node1: refused; 2 tier(s) blocked");
  assert.deepEqual(probe.verdict, { ok: false, tiers: { dns: "fail" }, notPassed: ["dns fail: dig: timeout"] });
  const refused = judgePhase(
    step("trace", "trace dns"),
    run({ exitCode: 2, stderr: "k8slab trace: TO svc/x: no such Service; nothing was sent\n" }),
    "two-node",
  );
  assert.equal(refused.reason, "exit 2: k8slab trace: TO svc/x: no such Service; nothing was sent");
  assert.equal(judgePhase(step("trace"), run({ stdout: traceJson() }), "two-node").ok, true);

  const down = judgePhase(step("down"), run({}), "two-node", ["netns k8slab-two-node"]);
  assert.equal(down.reason, "left behind: netns k8slab-two-node");
  assert.equal(judgePhase(step("import"), run({ exitCode: 2, signal: "SIGTERM", stderr: "x\nlast\n" }), "two-node").reason, "exit 2 (SIGTERM): last");
});

const phase = (name: string, seconds: number, ok = true, extra: Partial<PhaseRecord> = {}): PhaseRecord => ({
  name,
  command: `k8slab ${name}`,
  startedAt: "2025-01-01T00:00:00.000Z",
  seconds,
  exitCode: ok ? 0 : 1,
  ok,
  ...extra,
});
const cycle = (n: number, phases: PhaseRecord[], done = true): CycleRecord => ({
  cycle: n,
  startedAt: "2025-01-01T00:00:00.000Z",
  ok: phases.every((p) => p.ok),
  done,
  phases,
  skipped: [],
});

test("the summary: cycles passed, failed and unfinished; failures by phase; min / median / max of the passing runs", () => {
  assert.deepEqual([median([3, 1, 2]), median([4, 1, 3, 2]), median([]), median([1.25, 1.3])], [2, 2.5, 0, 1.3]);
  const s = summarize([
    cycle(1, [phase("up", 80), phase("probe", 2.3), phase("down", 5)]),
    cycle(2, [phase("up", 90), phase("probe", 30, false), phase("down", 4)]),
    cycle(3, [phase("up", 85), phase("probe", 2.1), phase("down", 6)]),
    { ...cycle(4, [phase("up", 20, false, { interrupted: "SIGINT" }), phase("down after SIGINT", 7)], false), skipped: ["probe", "down"] },
  ]);
  assert.deepEqual(s, {
    cycles: 4,
    passed: 2,
    failed: 1,
    unfinished: 1,
    failures: { up: 0, probe: 1, down: 0, "down after SIGINT": 0 },
    skipped: { probe: 1, down: 1 },
    seconds: {
      up: { runs: 3, min: 80, median: 85, max: 90 },
      probe: { runs: 2, min: 2.1, median: 2.2, max: 2.3 },
      down: { runs: 3, min: 4, median: 5, max: 6 },
      "down after SIGINT": { runs: 1, min: 7, median: 7, max: 7 },
    },
  });
});

test("the record's shape: what was asked, the run's folder, the summary, then the cycles", () => {
  const r = parseRepeatArgs([ctFile, "--cycles", "3"]);
  assert.ok("ok" in r && r.ok);
  const rec = newRecord(r.opts, [ctFile, "--cycles", "3"], "/logs/repeat-x");
  rec.cycles.push(
    cycle(1, [phase("up", 80, false, { reason: "exit 1: boom", output: "/logs/repeat-x/cycle-001-up/output.log", logs: "/logs/repeat-x/cycle-001-up" })]),
  );
  rec.summary = summarize(rec.cycles);
  const json = JSON.parse(JSON.stringify(rec));
  assert.deepEqual(Object.keys(json), ["lab", "labFile", "driver", "argv", "startedAt", "cyclesPlanned", "phases", "logs", "summary", "cycles"]);
  assert.deepEqual([json.lab, json.labFile, json.driver, json.cyclesPlanned], ["ct-two-node", ctFile, "container", 3]);
  assert.deepEqual(json.phases, [...PHASES]);
  assert.deepEqual(Object.keys(json.summary), ["cycles", "passed", "failed", "unfinished", "failures", "skipped", "seconds"]);
  assert.deepEqual(Object.keys(json.cycles[0]), ["cycle", "startedAt", "ok", "done", "phases", "skipped"]);
  assert.deepEqual(Object.keys(json.cycles[0].phases[0]), ["name", "command", "startedAt", "seconds", "exitCode", "ok", "reason", "output", "logs"]);
});

test("the script: --help exits 0 with its usage; bad input exits 2 with one line per problem and nothing run", () => {
  const script = (...args: string[]) =>
    spawnSync(process.execPath, ["--import", "tsx", "scripts/soak/repeat.ts", ...args], { cwd: root, encoding: "utf8", timeout: 60_000 });
  const help = script("--help");
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /^usage: npm run repeat -- \[LAB\] \[--cycles N\]/);
  const bad = script("--cycles", "x", "--phases", "up,nope");
  assert.equal(bad.status, 2, bad.stderr);
  assert.deepEqual(bad.stderr.trim().split("\n"), [
    '--cycles: a positive whole number, not "x"',
    '--phases: "nope" not a phase (up, probe, trace, second-up, down)',
    "usage: npm run repeat -- [LAB] [--cycles N] [--phases up,probe,trace,second-up,down] [--fresh-cache ARCHIVE] [--out FILE]",
  ]);
});

test("the runner: k8slab as a user runs it, timed, stdout apart and the whole output in order", async () => {
  const ok = await runK8slab(["validate", "labs/two-node.yaml"]);
  assert.equal(ok.exitCode, 0, ok.output);
  assert.match(ok.stdout, /valid lab "two-node"/);
  assert.ok(ok.output.includes(ok.stdout) && ok.seconds > 0 && !ok.signal);
  const bad = await runK8slab(["validate", "test/fixtures/labs/invalid-several-problems.yaml"]);
  assert.equal(bad.exitCode, 2);
  assert.match(bad.stderr, /^name: must be a lowercase RFC 1123 label/m);
});

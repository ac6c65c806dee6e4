// The live access's shell plumbing, run locally: the node agent (with the host's perl); several steps
// in one session, split back into one Exec each; entering a pod's container by its id; the two-step packet capture.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { pause } from "../core/shell.ts";
import { AGENT_SCRIPT, startAgent } from "../scripts/probes/agent.ts";
import { capture } from "../scripts/probes/capture.ts";
import { enterContainer } from "../scripts/probes/live.ts";
import { splitSteps, stepsScript } from "../scripts/probes/steps.ts";
import type { Exec } from "../scripts/probes/types.ts";
import { parsePcap } from "../scripts/trace/packets.ts";

/** As the live access runs a command on a node: with bash. */
const sh = (script: string): Exec => {
  const r = spawnSync("bash", ["-c", script], { encoding: "utf8" });
  return { where: "here", command: script, exitCode: r.status ?? 124, stdout: r.stdout, stderr: r.stderr, ms: 1 };
};

test("steps: each command's stdout, stderr and exit code come back apart, in order, even without a final newline", () => {
  const commands = ["echo out; echo err >&2", "exit 3", "printf 'no newline'", "sleep 0.1; echo after"];
  const steps = splitSteps(sh(stepsScript(commands)), commands);
  assert.deepEqual(
    steps.map((s) => [s.command, s.exitCode, s.stdout, s.stderr]),
    [
      ["echo out; echo err >&2", 0, "out\n", "err\n"],
      ["exit 3", 3, "", ""],
      ["printf 'no newline'", 0, "no newline", ""],
      ["sleep 0.1; echo after", 0, "after\n", ""],
    ],
  );
  assert.ok(steps[3].ms >= 90, `the step's own time (${steps[3].ms} ms)`);
});

test("steps: a batch that never printed (cut off, or the session failed) leaves every step failed with the batch's error", () => {
  const steps = splitSteps(
    { where: "node1", command: "…", exitCode: 255, stdout: "", stderr: "ssh: connect to host 127.0.0.1 port 2221: Connection refused\n", ms: 5 },
    ["ip -j route show", "ip -j neigh show"],
  );
  assert.deepEqual(
    steps.map((s) => [s.exitCode, s.stderr.trim()]),
    [
      [255, "ssh: connect to host 127.0.0.1 port 2221: Connection refused"],
      [255, "ssh: connect to host 127.0.0.1 port 2221: Connection refused"],
    ],
  );
});

test("entering a pod: only a containerd id of 64 hex digits becomes part of the node's command", () => {
  const id = "3f1c9a7e52b04d8f9e6a1c0b7d2e4f5a6b8c9d0e1f2a3b4c5d6e7f8091a2b3c4";
  const enter = enterContainer(`containerd://${id}`, "ip -j addr show eth0");
  assert.ok(enter);
  assert.match(enter, new RegExp(`/sys/fs/cgroup/kubepods.slice/\\*/cri-containerd-${id}.scope/cgroup.procs`));
  assert.match(enter, /exec nsenter -t "\$pid" -m -n -u -i -- bash -c 'ip -j addr show eth0'$/);
  for (const bad of ["", `docker://${id}`, `containerd://${id}; reboot`, "containerd://abc"]) assert.equal(enterContainer(bad, "true"), undefined, bad);
  // No such container on this machine: a clear error, not a command run outside the pod.
  const r = sh(enterContainer(`containerd://${"0".repeat(64)}`, "echo escaped")!);
  assert.equal(r.exitCode, 125);
  assert.match(r.stderr, /no process of container 000000000000 on this node/);
  assert.equal(r.stdout, "");
});

test("pause: waits its time on a pseudo-terminal's silence, with no process to start (no sleep on PATH)", () => {
  const started = Date.now();
  const r = spawnSync("bash", ["-c", `PATH=/nonexistent; ${pause(0.3)}; echo "rc=$?"`], { encoding: "utf8" });
  const ms = Date.now() - started;
  assert.equal(r.stdout, "rc=0\n", r.stderr);
  assert.equal(r.stderr, "");
  assert.ok(ms >= 290 && ms < 2000, `${ms} ms`);
});

test("capture: start returns once the capturer listens; collect waits its grace for it to end, else stops it, and hands over its output and exit code", () => {
  // Stand-ins for tcpdump with its habits: "listening on" to stderr, packet lines, an exit at its count.
  const atCount = `sh -c 'echo "listening on eth0" >&2; sleep 0.3; echo "IP 192.168.0.21.58472 > 192.168.0.22.8472: UDP"; exit 0'`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-capture-"));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const c = capture("underlay-test", atCount, 5, dir);
  const started = Date.now();
  const start = sh(c.start);
  assert.equal(start.exitCode, 0, start.stderr);
  assert.ok(Date.now() - started < 2000);
  const collected = sh(c.collect(3));
  assert.equal(collected.exitCode, 0);
  assert.equal(collected.stdout, "IP 192.168.0.21.58472 > 192.168.0.22.8472: UDP\n");
  assert.match(collected.stderr, /listening on eth0/);
  // One that never reaches its count (the packets were dropped): stopped after the grace, with what it saw.
  const waiting = `sh -c 'echo "listening on eth0" >&2; trap "echo stopped >&2; exit 0" TERM; while :; do sleep 0.1; done'`;
  const w = capture("waiting-test", waiting, 60, dir);
  assert.equal(sh(w.start).exitCode, 0);
  const stopAt = Date.now();
  const stopped = sh(w.collect(0.5));
  const ms = Date.now() - stopAt;
  assert.equal(stopped.exitCode, 0, stopped.stderr);
  assert.equal(stopped.stdout, "");
  assert.match(stopped.stderr, /stopped/);
  assert.ok(ms >= 400 && ms < 5000, `stopped after ${ms} ms`);
  // One that ran out of its own time first: its collect says so with timeout's 124.
  const short = capture("short-test", waiting, 0.5, dir);
  assert.equal(sh(short.start).exitCode, 0);
  spawnSync("sleep", ["1"]);
  assert.equal(sh(short.collect(0)).exitCode, 124);
  // A capturer that cannot start: start fails with its error instead of waiting.
  const broken = capture("broken-test", `sh -c 'echo "tcpdump: eth9: No such device exists" >&2; exit 1'`, 5, dir);
  const failed = sh(broken.start);
  assert.equal(failed.exitCode, 1);
  assert.match(failed.stderr, /No such device/);
  sh(broken.collect(0));
  assert.deepEqual(fs.readdirSync(dir), [], "collect removes what the capture left");
});

test("capture, pcap mode: real tcpdump prints the same lines and also hands over the packets as pcap", {
  skip: process.getuid?.() !== 0 || spawnSync("tcpdump", ["--version"]).status !== 0 ? "needs root and tcpdump" : false,
}, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-capture-pcap-"));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const c = capture("lo-test", "tcpdump -nn -l --immediate-mode -c 1 -i lo udp port 9999", 10, dir);
  // In a network namespace of its own: nothing but this ping on its loopback.
  const r = spawnSync("unshare", ["-n", "bash", "-c", `ip link set lo up\n${c.pcap.start}\necho k8slab >/dev/udp/127.0.0.1/9999\n${c.pcap.collect(2)}`], {
    encoding: "utf8",
    timeout: 30_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const [text, line] = r.stdout.split("k8slab-pcap ");
  assert.match(text, /IP 127\.0\.0\.1\.\d+ > 127\.0\.0\.1\.9999: UDP, length 7/);
  const packets = parsePcap(Buffer.from(line.trim(), "base64"));
  assert.deepEqual(
    packets.map((p) => [p.ip.proto, p.ip.dport]),
    [[17, 9999]],
  );
  assert.deepEqual(fs.readdirSync(dir), []);
});

test("agent: concurrent commands each get their own stdout, stderr and exit code, large outputs do not interleave, a hung one is cut off", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-agent-"));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const agent = startAgent("here", ["perl", "-e", AGENT_SCRIPT, path.join(dir, "lock")]);
  const big = (ch: string) => `head -c 200000 /dev/zero | tr '\\0' ${ch}`;
  const [slow, fast, out, err, hung] = await Promise.all([
    agent.run("sleep 0.5; echo slow", 5),
    agent.run("echo fast; echo complaint >&2; exit 3", 5),
    agent.run(big("o"), 5),
    agent.run(`${big("e")} >&2; printf 'no newline'`, 5),
    agent.run("sleep 30", 1),
  ]);
  assert.deepEqual([slow.exitCode, slow.stdout, slow.stderr], [0, "slow\n", ""]);
  assert.deepEqual([fast.exitCode, fast.stdout, fast.stderr], [3, "fast\n", "complaint\n"]);
  assert.ok(fast.ms < slow.ms, "answers come back as they finish, not in order");
  assert.equal(out.stdout, "o".repeat(200000));
  assert.deepEqual([err.stdout, err.stderr.length, new Set(err.stderr).size], ["no newline", 200000, 1]);
  assert.equal(hung.exitCode, 124, "timeout's exit code for a cut-off command");
  assert.equal(hung.overran, true, "cut off at its deadline: no finding");
  assert.equal(hung.where, "here");
  assert.ok([slow, fast, out, err].every((r) => !r.overran));
  await agent.close();
  assert.deepEqual(fs.readdirSync(dir), ["lock"], "the outputs' files were unlinked");
  const afterClose = await agent.run("true", 1);
  assert.equal(afterClose.exitCode, 255, "a closed agent runs nothing");
  assert.equal(afterClose.unreachable, true);
});

test("agent: one that cannot start (ssh refused) answers every command with exit 255 and what it said", async () => {
  const agent = startAgent("node9", ["sh", "-c", "echo 'ssh: connect to host 127.0.0.1 port 2229: Connection refused' >&2; exit 255"]);
  const [a, b] = await Promise.all([agent.run("true", 2), agent.run("ip -j route show", 2)]);
  for (const r of [a, b]) {
    assert.equal(r.exitCode, 255);
    assert.equal(r.unreachable, true, "nothing ran");
    assert.match(r.stderr, /Connection refused/);
  }
  await agent.close();
});

test("agent: one that never says ready (a login too slow) is killed after its start time, and its commands overran, not unreachable", async () => {
  const agent = startAgent("node9", ["sleep", "30"], 1);
  assert.equal(agent.startOverran(), false);
  const r = await agent.run("true", 60);
  assert.deepEqual([r.exitCode, r.overran, r.unreachable], [124, true, undefined]);
  assert.match(r.stderr, /did not start within 1 s/);
  assert.equal(agent.startOverran(), true, "the next command gets a new agent");
  await agent.close();
});

test("agent: a command that exits 124 by itself, before its deadline, did not overrun (a capture's own window, say)", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-agent-"));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const agent = startAgent("here", ["perl", "-e", AGENT_SCRIPT, path.join(dir, "lock")]);
  const [own, cut] = await Promise.all([agent.run("timeout 0.2 sleep 5", 5), agent.run("sleep 5", 1)]);
  assert.deepEqual([own.exitCode, own.overran], [124, undefined]);
  assert.deepEqual([cut.exitCode, cut.overran], [124, true]);
  await agent.close();
});

test("agent: at its deadline a command's whole process group ends; one that ignores SIGTERM is killed 2 s later", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-agent-"));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const agent = startAgent("here", ["perl", "-e", AGENT_SCRIPT, path.join(dir, "lock")]);
  const marker = path.join(dir, "child-pid");
  const [group, stubborn] = await Promise.all([agent.run(`sleep 30 & echo $! >${marker}; wait`, 1), agent.run("trap '' TERM; sleep 30", 1)]);
  assert.deepEqual([group.exitCode, group.overran], [124, true]);
  const child = Number(fs.readFileSync(marker, "utf8"));
  const alive = () => {
    try {
      return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${child}/status`, "utf8")); // a zombie has ended
    } catch {
      return false;
    }
  };
  assert.ok(!alive(), "the command's background child ended with it");
  assert.deepEqual([stubborn.exitCode, stubborn.overran], [137, true]);
  assert.ok(stubborn.ms >= 2900 && stubborn.ms < 6000, `killed after ${stubborn.ms} ms`);
  await agent.close();
});

test("steps: the steps a batch that overran never reached overran too; those it finished are answers", () => {
  const commands = ["echo first", "sleep 30", "echo never"];
  const partial = sh(`${stepsScript(commands.slice(0, 1))}`);
  const steps = splitSteps({ ...partial, exitCode: 124, overran: true }, commands);
  assert.deepEqual(
    steps.map((s) => [s.exitCode, s.overran]),
    [
      [0, undefined],
      [124, true],
      [124, true],
    ],
  );
});

// How busy a node is: the readings of /proc the probes and the soak take, parsed, and CPU time per process between two readings.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { cpuPerMinute, describeLoad, NODE_LOAD_COMMAND, PROCESS_CPU_COMMAND, parseNodeLoad, parseProcessCpu } from "../scripts/probes/load.ts";

test("node load: PSI's cpu 'some' line and the load average", () => {
  const load = parseNodeLoad("some avg10=96.50 avg60=94.20 avg300=90.00 total=123456\nloadavg 17.20 16.90 15.00 5/300 1234\n");
  assert.deepEqual(load, { cpuSome10: 96.5, cpuSome60: 94.2, cpuSome300: 90, load1: 17.2, load5: 16.9, load15: 15 });
  assert.equal(describeLoad(load!), "CPU pressure 96.5% (10 s) 94.2% (60 s), load 17.2 16.9 15");
  assert.equal(parseNodeLoad("loadavg 1 1 1 1/1 1\n"), undefined, "no PSI line");
  assert.equal(parseNodeLoad("bash: /proc/pressure/cpu: No such file or directory\n"), undefined);
});

test("node load: the command reads this machine's /proc with builtins and parses (where the kernel has PSI)", (t) => {
  const r = spawnSync("bash", ["-c", NODE_LOAD_COMMAND], { encoding: "utf8" });
  if (r.status !== 0) return t.skip(`no /proc/pressure/cpu here: ${r.stderr.trim()}`);
  const load = parseNodeLoad(r.stdout);
  assert.ok(load && load.cpuSome60 >= 0 && load.cpuSome60 <= 100 && load.load1 >= 0, r.stdout);
});

test("process CPU: comm with spaces and parentheses, own and reaped children's time, the node's busy total", () => {
  const text = [
    "812 (kube-apiserver) S 1 812 812 0 -1 4194560 100 0 0 0 5000 1000 10 20 20 0 12 0 300 0 0",
    "913 (my (odd) name) S 1 913 913 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 300 0 0",
    "914 (kube-apiserver) S 1 914 914 0 -1 4194560 100 0 0 0 100 0 0 0 20 0 1 0 300 0 0",
    "cpu  10000 500 3000 90000 100 50 25 5 0 0",
  ].join("\n");
  const cpu = parseProcessCpu(text);
  assert.equal(cpu.byCommand.get("kube-apiserver"), (5000 + 1000 + 10 + 20 + 100) / 100);
  assert.equal(cpu.byCommand.get("my (odd) name"), 0.1);
  assert.equal(cpu.busy, (10000 + 500 + 3000 + 50 + 25 + 5) / 100);
});

test("process CPU: seconds per minute between two readings, busiest first, idle and vanished processes left out", () => {
  const before = {
    byCommand: new Map([
      ["etcd", 100],
      ["kubelet", 50],
      ["sleep", 1],
    ]),
    busy: 1000,
  };
  const after = {
    byCommand: new Map([
      ["etcd", 130],
      ["kubelet", 60],
      ["idle", 5],
    ]),
    busy: 1090,
  };
  const d = cpuPerMinute(before, after, 600);
  assert.deepEqual(d, {
    busy: 9,
    byCommand: [
      ["etcd", 3],
      ["kubelet", 1],
      ["idle", 0.5],
    ],
  });
});

test("process CPU: the command runs here and finds this test's own process", () => {
  const r = spawnSync("bash", ["-c", PROCESS_CPU_COMMAND], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const cpu = parseProcessCpu(r.stdout);
  assert.ok(cpu.busy > 0);
  assert.ok(
    [...cpu.byCommand.keys()].some((c) => c.startsWith("node") || c === "MainThread"),
    [...cpu.byCommand.keys()].join(","),
  );
});

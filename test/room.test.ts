// A room file: every learner's lab derived from the template (name, ports), checked; the roll-up's
// table and JUnit; the memory check before `up --room`; its labs' processes stopped with it.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { parseRoom } from "../core/room.ts";
import { CONTAINER_NODE_MIB, type RollUpRow, renderRollUp, renderRollUpJunit, roomMemoryProblem, runEach, VM_OVERHEAD_MIB } from "../scripts/room.ts";

const root = path.join(import.meta.dirname, "..");
const template = fs.readFileSync(path.join(root, "labs/two-node.yaml"), "utf8");
const room = (text: string) => parseRoom(text, "room.yaml", template, (l) => `/state/rooms/ws/${l}.yaml`);

test("each learner gets a lab of its own: name, 127.0.0.1 ports; the addresses inside stay the template's", () => {
  const r = room(fs.readFileSync(path.join(root, "labs/room.yaml"), "utf8"));
  assert.ok(r.ok, JSON.stringify(!r.ok && r.problems));
  const [alice, bob] = r.room.labs;
  assert.deepEqual([alice.lab.name, bob.lab.name], ["ws-alice", "ws-bob"]);
  assert.deepEqual([alice.lab.netns, bob.lab.netns], ["k8slab-ws-alice", "k8slab-ws-bob"]);
  const ports = (l: typeof alice) => (l.lab.driver.kind === "qemu" ? [l.lab.driver.sshPortBase, l.lab.driver.apiServerPort] : []);
  assert.deepEqual(ports(alice), [2321, 16543]);
  assert.deepEqual(ports(bob), [2323, 16544], "after alice's two ssh ports");
  assert.equal(alice.lab.nodes[0].address, bob.lab.nodes[0].address, "each in its own namespace");
  assert.equal(alice.lab.file, "/state/rooms/ws/alice.yaml");
});

test("a count names the learners l1..lN; bad rooms say what is wrong", () => {
  const counted = room("name: ws\ntemplate: two-node.yaml\ncount: 3\n");
  assert.ok(counted.ok);
  assert.deepEqual(
    counted.room.labs.map((l) => l.learner),
    ["l1", "l2", "l3"],
  );
  const problems = (text: string) => {
    const r = room(text);
    assert.ok(!r.ok);
    return r.problems.map((p) => `${p.path}: ${p.reason}`).join("\n");
  };
  assert.match(problems("name: ws\ntemplate: t.yaml\ncount: 2\nlearners: [a]\n"), /^learners: give the learners' names or a count, one of the two$/m);
  assert.match(problems("name: ws\ntemplate: t.yaml\nlearners: [a, a]\n"), /^learners: a is named twice$/m);
  assert.match(problems(`name: ${"w".repeat(55)}\ntemplate: t.yaml\nlearners: [alice]\n`), /^learners\.alice: name: /m);
  assert.match(problems("name: ws\ntemplate: t.yaml\nlearners: [a]\nparallel: 0\n"), /^parallel: /m);
  const ssh = template.replace(/^driver:[\s\S]*?\n(?=\S)/m, "driver:\n  kind: ssh\n  apiServerEndpoint: 192.168.0.21:6443\n");
  const viaSsh = parseRoom("name: ws\ntemplate: t.yaml\nlearners: [a]\n", "room.yaml", ssh, (l) => l);
  assert.ok(!viaSsh.ok);
});

test("the host's memory for the labs not up yet; the roll-up, and JUnit with a failure per tier not passing", () => {
  const r = room("name: ws\ntemplate: two-node.yaml\ncount: 4\n");
  assert.ok(r.ok);
  const perLab = r.room.labs[0].lab.nodes.reduce((s, n) => s + (n.memoryMiB ?? 2048) + VM_OVERHEAD_MIB, 0);
  assert.equal(roomMemoryProblem(r.room.labs, 4 * perLab * 1024), undefined);
  assert.match(roomMemoryProblem(r.room.labs, 3 * perLab * 1024) ?? "", new RegExp(`need ${4 * perLab} MiB, the host has ${3 * perLab} MiB`));
  const rows: RollUpRow[] = [
    { learner: "alice", lab: "ws-alice", up: true, verdicts: { underlay: "pass", flannel: "fail" }, scenario: "route-missing" },
    { learner: "bob", lab: "ws-bob", up: false, verdicts: {} },
  ];
  const table = renderRollUp(rows);
  assert.match(table, /^learner\s+lab\s+up\s+underlay\s+flannel\s+/);
  assert.match(table, /^alice\s+ws-alice\s+yes\s+pass\s+fail\s+-.*route-missing$/m);
  const junit = renderRollUpJunit("ws", rows);
  assert.match(junit, /<testcase classname="ws.alice" name="underlay"><\/testcase>/);
  assert.match(junit, /<testcase classname="ws.alice" name="flannel"><failure message="fail"\/>/);
  assert.match(junit, /<testcase classname="ws.bob" name="underlay"><failure message="lab not up"\/>/);
});

test("a room of container-node labs: each lab's ports, and a node's resident memory counted, not its limit", () => {
  const ctTemplate = fs.readFileSync(path.join(root, "labs/container-two-node.yaml"), "utf8");
  const r = parseRoom(fs.readFileSync(path.join(root, "labs/room-containers.yaml"), "utf8"), "room.yaml", ctTemplate, (l) => `/state/rooms/ct/${l}.yaml`);
  assert.ok(r.ok, JSON.stringify(!r.ok && r.problems));
  assert.deepEqual(
    r.room.labs.map((l) => [l.lab.name, l.lab.driver.kind === "container" && l.lab.driver.sshPortBase]),
    [
      ["ct-l1", 2341],
      ["ct-l2", 2343],
      ["ct-l3", 2345],
      ["ct-l4", 2347],
    ],
  );
  const need = 4 * 2 * CONTAINER_NODE_MIB;
  assert.equal(roomMemoryProblem(r.room.labs, need * 1024), undefined);
  assert.match(roomMemoryProblem(r.room.labs, (need - 1) * 1024) ?? "", new RegExp(`nodes need ${need} MiB`));
});

test("SIGTERM to the room command reaches every lab's running process, none starts after it, and it returns once they ended", { timeout: 30_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-room-"));
  try {
    // Stand-ins for `k8slab up`: say they started, and end 143 on SIGTERM as k8slab does.
    const lab = (name: string) => ({
      command: "bash",
      args: ["-c", `trap 'kill $!; echo "${name}: TERM" >&2; exit 143' TERM; : > ${dir}/${name}.started; sleep 20 & wait`],
      log: path.join(dir, `${name}.log`),
    });
    const done: [string, number][] = [];
    const ran = runEach(["alice", "bob", "carol"], 2, lab, (name, code) => void done.push([name, code]));
    for (const until = Date.now() + 10_000; !(fs.existsSync(`${dir}/alice.started`) && fs.existsSync(`${dir}/bob.started`)) && Date.now() < until; )
      await new Promise((r) => setTimeout(r, 50));
    const sent = Date.now();
    process.kill(process.pid, "SIGTERM");
    assert.equal(await ran, "SIGTERM");
    assert.ok(Date.now() - sent < 5000, "the labs ended on the signal, not at their own end");
    assert.deepEqual(done.sort(), [
      ["alice", 143],
      ["bob", 143],
    ]);
    assert.equal(fs.existsSync(`${dir}/carol.started`), false, "no lab starts after the signal");
    assert.match(fs.readFileSync(`${dir}/alice.log`, "utf8"), /alice: TERM/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a lab's process that exits while something it left behind holds its stdout: its answer comes at once, not when that ends", {
  timeout: 30_000,
}, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-room-"));
  let leftBehind = 0;
  try {
    const started = Date.now();
    const done: [string, number, string][] = [];
    await runEach(
      ["alice"],
      1,
      (name) => ({ command: "bash", args: ["-c", "sleep 20 & echo $!; echo '{\"ok\":true}'; exit 3"], log: path.join(dir, `${name}.log`) }),
      (name, code, _s, stdout) => void done.push([name, code, stdout]),
    );
    leftBehind = Number(done[0][2].split("\n")[0]);
    assert.ok(Date.now() - started < 8000, `${Date.now() - started} ms`);
    assert.deepEqual(done[0].slice(0, 2), ["alice", 3]);
    assert.match(done[0][2], /\{"ok":true\}/, "what it printed before it exited is all there");
  } finally {
    if (leftBehind) process.kill(leftBehind);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

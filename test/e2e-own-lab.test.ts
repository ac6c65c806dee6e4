// The end-to-end tests' own labs (test/e2e/own-lab.ts): made from the repo's lab and room files under
// names of their own, on 127.0.0.1 ports no repo lab, no room made from one and no other e2e lab uses;
// and `down` refused for any lab or room that is not of those names.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import yaml from "js-yaml";
import { type Lab, parseLab } from "../core/lab.ts";
import { parseRoom } from "../core/room.ts";
import { E2E_PORT_OFFSET, isOwnName, MACHINES_CT_PORTS, notOwnTarget, ownLabText, ownRoomText } from "./e2e/own-lab.ts";

const root = path.join(import.meta.dirname, "..");
const read = (f: string) => fs.readFileSync(path.join(root, f), "utf8");
const LAB_FILES = ["labs/two-node.yaml", "labs/container-two-node.yaml", ...fs.readdirSync(path.join(root, "labs/variants")).map((f) => `labs/variants/${f}`)];
const ROOM_FILES = ["labs/room.yaml", "labs/room-containers.yaml"];

const parsed = (text: string, file: string): Lab => {
  const r = parseLab(text, file);
  assert.ok(r.ok, JSON.stringify(!r.ok && r.problems));
  return r.lab;
};
const portsOf = (lab: Lab): number[] => {
  assert.ok(lab.driver.kind === "qemu" || lab.driver.kind === "container");
  return [...lab.nodes.map((_, i) => (lab.driver as { sshPortBase: number }).sshPortBase + i), lab.driver.apiServerPort];
};
/** A room file's labs as `up --room` derives them (the template read from the repo). */
const roomLabs = (text: string, file: string): Lab[] => {
  const template = (yaml.load(text) as { template: string }).template;
  const r = parseRoom(text, file, fs.readFileSync(path.resolve(root, path.dirname(file), template), "utf8"), (l) => `/state/rooms/x/${l}.yaml`);
  assert.ok(r.ok, JSON.stringify(!r.ok && r.problems));
  return r.room.labs.map((l) => l.lab);
};

test("the reference lab's own copy: e2e-two-node, ports moved by the e2e offset, every other field the template's", () => {
  const { name, text } = ownLabText(read("labs/two-node.yaml"), "labs/two-node.yaml");
  assert.equal(name, "e2e-two-node");
  const own = parsed(text, "/state/e2e/e2e-two-node.yaml");
  const template = parsed(read("labs/two-node.yaml"), "labs/two-node.yaml");
  assert.equal(own.name, "e2e-two-node");
  assert.equal(own.netns, "k8slab-e2e-two-node");
  assert.deepEqual(portsOf(own), [2221 + E2E_PORT_OFFSET, 2222 + E2E_PORT_OFFSET, 16443 + E2E_PORT_OFFSET]);
  const doc = (t: string) => yaml.load(t) as Record<string, any>;
  const { name: _n1, driver: d1, ...rest1 } = doc(text);
  const { name: _n2, driver: d2, ...rest2 } = doc(read("labs/two-node.yaml"));
  assert.deepEqual(rest1, rest2, "LAN, nodes, pods, Services, ingress and workloads stay the template's");
  assert.equal(d1.kind, d2.kind);
  assert.deepEqual(
    own.nodes.map((n) => [n.name, n.address]),
    template.nodes.map((n) => [n.name, n.address]),
  );
});

test("every e2e lab and room lab is of the tests' own names, and none shares a port with a repo lab, a room made from one, or another e2e lab", () => {
  const theirs: Lab[] = [...LAB_FILES.map((f) => parsed(read(f), f)), ...ROOM_FILES.flatMap((f) => roomLabs(read(f), f))];
  const ours: Lab[] = [
    ...LAB_FILES.map((f) => parsed(ownLabText(read(f), f).text, `/state/e2e/${f}`)),
    ...ROOM_FILES.flatMap((f) => roomLabs(ownRoomText(read(f), path.join(root, f)).text, path.join(root, f))),
  ];
  for (const l of ours) assert.ok(isOwnName(l.name), l.name);
  for (const l of theirs) assert.ok(!isOwnName(l.name), `${l.name}: a repo lab is not named as the tests' own`);
  const owner = new Map<number, string>();
  for (const l of theirs) for (const p of portsOf(l)) owner.set(p, l.name);
  const problems: string[] = [];
  const mine = [
    ...ours.map((l) => [l.name, portsOf(l)] as const),
    ["e2e-ct (machines-container)", [MACHINES_CT_PORTS.sshPortBase, MACHINES_CT_PORTS.sshPortBase + 1, MACHINES_CT_PORTS.apiServerPort]] as const,
  ];
  for (const [name, ports] of mine) {
    for (const p of ports) {
      const other = owner.get(p);
      if (other && other !== name) problems.push(`${name} port ${p} is also ${other}'s`);
      owner.set(p, name);
    }
  }
  assert.deepEqual(problems, []);
  assert.equal(new Set(ours.map((l) => l.name)).size, ours.length, "no two e2e labs share a name");
  // A room made from the repo's rooms with up to 64 learners (the schema's limit) stays below the e2e ports too.
  const highest = Math.max(...theirs.map((l) => portsOf(l)[0])) + 64 * 2;
  assert.ok(highest < 2221 + E2E_PORT_OFFSET, `a 64-learner room reaches ${highest}`);
});

test("the room's own copy: e2e-<name>, the template by absolute path, the port offset moved", () => {
  const file = path.join(root, "labs/room-containers.yaml");
  const { name, text } = ownRoomText(read("labs/room-containers.yaml"), file);
  assert.equal(name, "e2e-ct");
  const doc = yaml.load(text) as Record<string, any>;
  assert.equal(doc.template, path.join(root, "labs/container-two-node.yaml"));
  assert.equal(doc.portOffset, 100 + E2E_PORT_OFFSET);
  assert.deepEqual(
    roomLabs(text, "/state/e2e/e2e-ct.room.yaml").map((l) => l.name),
    ["e2e-ct-l1", "e2e-ct-l2", "e2e-ct-l3", "e2e-ct-l4"],
  );
  // What loadRoom reads with its own regexes (scripts/room.ts), before the YAML.
  assert.equal(/^name:\s*(\S+)/m.exec(text)?.[1], "e2e-ct");
  assert.equal(/^template:\s*(\S+)/m.exec(text)?.[1], doc.template);
});

test("a template that cannot be an e2e lab is refused, naming why", () => {
  assert.throws(() => ownLabText("name: x\n", "x.yaml"), /x\.yaml: /);
  const hosts = read("labs/two-node.yaml").replace(/driver:\n(?: {2}.*\n)+/, "driver:\n  kind: existing\n");
  assert.throws(() => ownLabText(hosts, "hosts.yaml"), /hosts\.yaml: /);
  // A name that fits alone but not with the prefix: its network namespace would pass the limit.
  const long = read("labs/two-node.yaml").replace(/^name: .*$/m, `name: ${"a".repeat(57)}`);
  parsed(long, "long.yaml");
  assert.throws(() => ownLabText(long, "long.yaml"), /as e2e-a+: name: /);
});

test("down is refused for a repo lab or room, allowed for the tests' own", () => {
  assert.match(notOwnTarget(["labs/two-node.yaml"]) ?? "", /only its own labs: .*labs\/two-node\.yaml names lab "two-node"/);
  assert.match(notOwnTarget(["labs/container-two-node.yaml"]) ?? "", /names lab "ct-two-node"/);
  assert.match(notOwnTarget(["--room", "labs/room-containers.yaml"]) ?? "", /names room "ct"/);
  assert.match(notOwnTarget(["labs/no-such.yaml"]) ?? "", /ENOENT/);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-own-lab-"));
  try {
    const lab = path.join(dir, "lab.yaml");
    fs.writeFileSync(lab, ownLabText(read("labs/two-node.yaml"), "labs/two-node.yaml").text);
    assert.equal(notOwnTarget([lab]), undefined);
    const room = path.join(dir, "room.yaml");
    fs.writeFileSync(room, ownRoomText(read("labs/room-containers.yaml"), path.join(root, "labs/room-containers.yaml")).text);
    assert.equal(notOwnTarget(["--room", room]), undefined);
    fs.writeFileSync(lab, '# e2e-looking comment\nname: "two-node"\n');
    assert.match(notOwnTarget([lab]) ?? "", /names lab "two-node"/, "a quoted name is read as the name");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

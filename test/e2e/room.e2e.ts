// End-to-end test of a room (root, LXC): `up --room` brings every learner's container-node lab up, the
// roll-up shows every tier passing for each, one learner's lab is broken by a scenario (the roll-up names
// it) and `reset` brings it back, then `down --room` leaves nothing. Prints the figures the issue asks
// for: time to all green, peak host memory, reset. The room is the tests' own (labs/room-containers.yaml
// as e2e-ct: labs e2e-ct-l1..4, own-lab.ts). `npm run test:e2e:room` (not in CI: four labs).
import "../../scripts/quiet-bash.ts";
import assert from "node:assert/strict";
import fs from "node:fs";
import { after, before, describe, it } from "node:test";
import { labPaths } from "../../core/paths.ts";
import type { RoomLab } from "../../core/room.ts";
import { netnsExists } from "../../scripts/machines/labnet.ts";
import { loadRoom, type RollUpRow } from "../../scripts/room.ts";
import { ownRoom } from "./own-lab.ts";
import { assertExited0, k8slab, ownRunsAndLabs, secsSince } from "./reference-lab.ts";

const ROOM_FILE = ownRoom("labs/room-containers.yaml").file;
// The labs as `up --room` derives them (their files written where k8slab keeps the room's).
const room = loadRoom(ROOM_FILE);
assert.ok(room);
const labs: RoomLab[] = room.labs;
const figures: Record<string, number | string> = {};

/** The host's memory in use (MemTotal - MemAvailable), MiB. */
const hostUsedMiB = () => {
  const m = fs.readFileSync("/proc/meminfo", "utf8");
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(m)?.[1]);
  return Math.round((kib("MemTotal") - kib("MemAvailable")) / 1024);
};

describe("a room of four container-node labs", { skip: process.getuid?.() === 0 ? false : "needs root (namespaces, LXC)" }, () => {
  ownRunsAndLabs(["--room", ROOM_FILE]);
  let peak = 0;
  let sampler: NodeJS.Timeout | undefined;
  const status = async () => {
    const r = await k8slab("status", "--room", ROOM_FILE, "--json");
    return { exitCode: r.exitCode, rows: (JSON.parse(r.stdout) as { labs: RollUpRow[] }).labs };
  };
  const notPassing = (rows: RollUpRow[]) =>
    rows.flatMap((r) =>
      r.up
        ? Object.entries(r.verdicts)
            .filter(([, v]) => v !== "pass")
            .map(([t, v]) => `${r.learner} ${t} ${v}`)
        : [`${r.learner} not up`],
    );

  before(async () => {
    await k8slab("down", "--room", ROOM_FILE);
    figures["host used MiB before"] = hostUsedMiB();
    sampler = setInterval(() => {
      peak = Math.max(peak, hostUsedMiB());
    }, 2000);
  });

  after(async () => {
    clearInterval(sampler);
    figures["host used MiB peak"] = peak;
    if (process.env.K8SLAB_E2E_KEEP === "1") return process.stderr.write(`room e2e figures: ${JSON.stringify(figures)}\n`);
    const from = Date.now();
    const down = await k8slab("down", "--room", ROOM_FILE);
    figures["down --room s"] = secsSince(from);
    process.stderr.write(`room e2e figures: ${JSON.stringify(figures)}\n`);
    assertExited0(down, "down --room", down.stderr);
    for (const l of labs) {
      assert.equal(netnsExists(l.lab.netns), false, `${l.lab.name}'s namespace is gone`);
      assert.equal(fs.existsSync(labPaths(l.lab.name).dir), false, `${l.lab.name}'s state is gone`);
    }
  });

  it("up --room brings every learner's lab up", { timeout: 40 * 60_000 }, async () => {
    const from = Date.now();
    const up = await k8slab("up", "--room", ROOM_FILE);
    figures["up --room s"] = secsSince(from);
    assertExited0(up, "up --room", up.stderr);
    for (const l of labs) assert.match(up.stderr, new RegExp(`✓ ${l.learner} \\(${l.lab.name}\\): up done`));
  });

  it("the roll-up shows every tier passing for every learner", { timeout: 10 * 60_000 }, async () => {
    const from = Date.now();
    const { exitCode, rows } = await status();
    figures["status --room s"] = secsSince(from);
    assert.deepEqual(
      rows.map((r) => r.learner),
      labs.map((l) => l.learner),
    );
    assert.deepEqual(notPassing(rows), []);
    for (const r of rows) assert.equal(Object.keys(r.verdicts).length, 9, `${r.learner}: nine tiers`);
    assert.equal(exitCode, 0);
  });

  it("one learner's lab broken by a scenario shows in the roll-up, and reset brings it back", { timeout: 15 * 60_000 }, async () => {
    const [first] = labs;
    const broke = await k8slab("break", first.lab.file, "coredns-down");
    assertExited0(broke, "break", broke.stderr);
    const during = await status();
    const row = during.rows.find((r) => r.learner === first.learner);
    assert.equal(row?.scenario, "coredns-down");
    assert.equal(row?.verdicts.dns, "fail");
    assert.deepEqual(notPassing(during.rows.filter((r) => r.learner !== first.learner)), [], "the other learners' labs are not touched");
    assert.equal(during.exitCode, 1);
    const from = Date.now();
    const reset = await k8slab("reset", first.lab.file);
    figures["reset s"] = secsSince(from);
    assertExited0(reset, "reset", reset.stderr);
    const healed = await status();
    assert.deepEqual(notPassing(healed.rows), []);
    assert.equal(healed.rows.find((r) => r.learner === first.learner)?.scenario, undefined);
  });
});

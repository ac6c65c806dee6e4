// `k8slab up | probe | status | down --room FILE` and `k8slab reset LAB`: a workshop's labs. Each
// learner's lab is a lab file k8slab writes (core/room.ts derives it) under the state folder, run by
// its own k8slab process (its output in a log beside it), `parallel` at a time. `status --room` is
// the instructor's roll-up: per learner, its VMs, every tier's verdict and the scenario applied.
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { EXIT, exitOnSignal } from "../core/exit.ts";
import type { Lab } from "../core/index.ts";
import { labPaths, stateRoot } from "../core/paths.ts";
import { parseRoom, type Room, type RoomLab } from "../core/room.ts";
import { labOrProblems, readLabFile } from "./lab-file.ts";
import { labIsUp, labRunning } from "./machines/lab.ts";
import { checkInotify, inotifyInUse, inotifyLimit } from "./machines/preflight.ts";
import { TIER_IDS } from "./probes/contract.ts";
import type { ProbeReport } from "./probes/types.ts";
import { claimSignals } from "./signals.ts";
import { repoRoot } from "./toolchain/paths.ts";
import { assertOutput, ROOM_FILE, readInputText, readOptionalText, STATE_FILE, writeOutput } from "./user-file.ts";

const say = (line: string) => process.stderr.write(`${line}\n`);
export const roomDir = (room: string) => path.join(stateRoot(), "rooms", room);
const labFileOf = (room: string, learner: string) => path.join(roomDir(room), `${learner}.yaml`);

/** The room and its labs, each lab file written; problems (exit 2) named by the room file's field; FileRefused when it is not a file to read. */
export function loadRoom(file: string): Room | undefined {
  const text = readInputText(file, ROOM_FILE, "--room");
  const templateRef = /^template:\s*(\S+)/m.exec(text)?.[1]?.replace(/^["']|["']$/g, "");
  const templatePath = templateRef ? path.resolve(path.dirname(file), templateRef) : "";
  const template = templateRef ? readLabFile(templatePath) : { reason: "names no template lab file" };
  if (typeof template !== "string") {
    say(`${file}: template: ${template.reason}`);
    return undefined;
  }
  const name = /^name:\s*(\S+)/m.exec(text)?.[1] ?? "room";
  const parsed = parseRoom(text, file, template, (learner) => labFileOf(name, learner));
  if (!parsed.ok) {
    for (const p of parsed.problems) say(`${p.path}: ${p.reason}`);
    return undefined;
  }
  fs.mkdirSync(roomDir(parsed.room.name), { recursive: true, mode: 0o700 });
  for (const l of parsed.room.labs) writeOutput(l.lab.file, l.text);
  return parsed.room;
}

/**
 * QEMU's own memory beside a guest's under TCG (its translation cache above all), measured on the
 * reference lab after a 2-hour soak: node1 3072 MiB guest, 3882 MiB resident; node2 2048, 2907.
 */
export const VM_OVERHEAD_MIB = 860;

/**
 * A container node's resident memory with the reference lab running (the container lab e2e: node1
 * with etcd and the control plane 540 MiB, node2 212 MiB), rounded up. Its page cache (the pushed
 * bundle and images, about 1 GiB) is not counted: the kernel reclaims it under pressure.
 */
export const CONTAINER_NODE_MIB = 600;

/** What one node of a lab takes from the host: a VM its guest memory and QEMU's own; a container node what it holds resident. */
export function nodeMemoryMiB(lab: Lab, node: Lab["nodes"][number]): number {
  return lab.driver.kind === "container" ? CONTAINER_NODE_MIB : node.memoryMiB + VM_OVERHEAD_MIB;
}

/** What the host has for the room's labs that are not up yet: their nodes' memory against MemAvailable. */
export function roomMemoryProblem(labs: RoomLab[], memAvailableKiB = memAvailable()): string | undefined {
  const needMiB = labs.reduce((sum, l) => sum + l.lab.nodes.reduce((s, n) => s + nodeMemoryMiB(l.lab, n), 0), 0);
  const haveMiB = Math.floor(memAvailableKiB / 1024);
  return needMiB > haveMiB
    ? `the labs' nodes need ${needMiB} MiB, the host has ${haveMiB} MiB available: fewer learners, or smaller nodes in the template`
    : undefined;
}

function memAvailable(): number {
  return Number(/^MemAvailable:\s+(\d+)/m.exec(fs.readFileSync("/proc/meminfo", "utf8"))?.[1] ?? 0);
}

/** Runs `k8slab <args> <lab file>` for every lab, `parallel` at a time; each one's output in its log. */
function eachLab(room: Room, args: string[], onDone: (l: RoomLab, code: number, seconds: number, stdout: string) => void): Promise<NodeJS.Signals | undefined> {
  return runEach(
    room.labs,
    room.parallel,
    (l) => {
      const log = path.join(roomDir(room.name), `${l.learner}.${args[0]}.log`);
      assertOutput(log);
      return {
        command: path.join(repoRoot, "node_modules/.bin/node"),
        args: [path.join(repoRoot, "scripts/bin/k8slab.mjs"), args[0], l.lab.file, ...args.slice(1)],
        log,
      };
    },
    onDone,
  );
}

/**
 * Runs one process per item, `parallel` at a time, its stderr in its log, its stdout handed to onDone. SIGINT or
 * SIGTERM is handed to every running process (a k8slab `up` then stops its Pulumi run and exits
 * 130/143 itself), none is started after it, and once they have all ended the signal is returned: the
 * room's processes never outlive the room command.
 */
export async function runEach<T>(
  items: T[],
  parallel: number,
  commandOf: (item: T) => { command: string; args: string[]; log: string },
  onDone: (item: T, code: number, seconds: number, stdout: string) => void,
): Promise<NodeJS.Signals | undefined> {
  const queue = [...items];
  const running = new Set<ChildProcess>();
  let stoppedBy: NodeJS.Signals | undefined;
  const stop = (signal: NodeJS.Signals) => {
    stoppedBy ??= signal;
    queue.length = 0;
    for (const child of running) child.kill(signal);
  };
  const release = claimSignals();
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  const worker = async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
      const started = Date.now();
      const { command, args, log } = commandOf(item);
      const err = fs.openSync(log, "w");
      const out: Buffer[] = [];
      const code = await new Promise<number>((resolve) => {
        const child = spawn(command, args, { cwd: repoRoot, stdio: ["ignore", "pipe", err] });
        running.add(child);
        child.stdout?.on("data", (d: Buffer) => out.push(d));
        child.once("error", () => resolve(EXIT.failed));
        // Its exit is the answer; its stdout is read to the end ("close"), but not for long: a process it
        // left behind (a VM, say) may hold the pipe open.
        child.once("exit", (c, signal) => {
          running.delete(child);
          const code = c ?? (signal ? exitOnSignal(signal) : EXIT.failed);
          const drained = setTimeout(() => resolve(code), 2000);
          child.once("close", () => {
            clearTimeout(drained);
            resolve(code);
          });
        });
      });
      fs.closeSync(err);
      onDone(item, code, Math.round((Date.now() - started) / 100) / 10, Buffer.concat(out).toString("utf8"));
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(parallel, items.length) }, worker));
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    release();
  }
  return stoppedBy;
}

export async function roomCommand(what: "up" | "down" | "probe", file: string): Promise<number> {
  const room = loadRoom(file);
  if (!room) return EXIT.invalid;
  if (what === "up") {
    const down = [];
    for (const l of room.labs)
      if (
        !(await labRunning(
          l.lab.name,
          l.lab.netns,
          l.lab.nodes.map((n) => n.name),
        ))
      )
        down.push(l);
    // Checked for the whole room before any lab starts: a room that cannot all run is refused, not half made.
    const containerNodes = down.filter((l) => l.lab.driver.kind === "container").reduce((n, l) => n + l.lab.nodes.length, 0);
    const problems = [roomMemoryProblem(down), ...checkInotify(containerNodes, inotifyLimit(), inotifyInUse())].filter(Boolean);
    if (problems.length) {
      for (const p of problems) say(`k8slab up --room: ${p}`);
      return EXIT.invalid;
    }
  }
  let failed = 0;
  say(`room ${room.name}: ${what} of ${room.labs.length} labs, ${room.parallel} at a time (logs in ${roomDir(room.name)})`);
  const stoppedBy = await eachLab(room, [what], (l, code, seconds) => {
    if (code !== 0) failed++;
    say(`  ${code === 0 ? "✓" : "✗"} ${l.learner} (${l.lab.name}): ${what} ${code === 0 ? "done" : `exit ${code}`} in ${seconds} s`);
  });
  if (stoppedBy) {
    say(`room ${room.name}: ${stoppedBy}: stopped (each lab's k8slab stopped first; \`k8slab up --room\` again goes on, \`down --room\` cleans up)`);
    return exitOnSignal(stoppedBy);
  }
  return failed ? EXIT.failed : EXIT.ok;
}

export interface RollUpRow {
  learner: string;
  lab: string;
  up: boolean;
  verdicts: Record<string, string>;
  scenario?: string;
}

/** The roll-up as a table: one row per learner, one column per tier. */
export function renderRollUp(rows: RollUpRow[]): string {
  const head = ["learner", "lab", "up", ...TIER_IDS, "scenario"];
  const lines = rows.map((r) => [r.learner, r.lab, r.up ? "yes" : "no", ...TIER_IDS.map((t) => r.verdicts[t] ?? "-"), r.scenario ?? "-"]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]))
      .join("  ")
      .trimEnd();
  return `${[fmt(head), ...lines.map(fmt)].join("\n")}\n`;
}

export function renderRollUpJunit(room: string, rows: RollUpRow[]): string {
  const esc = (s: string) => s.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const cases = rows.flatMap((r) =>
    TIER_IDS.map((t) => {
      const v = r.up ? (r.verdicts[t] ?? "not run") : "lab not up";
      return `    <testcase classname="${esc(`${room}.${r.learner}`)}" name="${t}">${v === "pass" || v === "skipped" ? "" : `<failure message="${esc(v)}"/>`}</testcase>`;
    }),
  );
  const failures = cases.filter((c) => c.includes("<failure")).length;
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n  <testsuite name="${esc(room)}" tests="${cases.length}" failures="${failures}">\n${cases.join("\n")}\n  </testsuite>\n</testsuites>\n`;
}

export async function roomStatus(file: string, opts: { json?: boolean; junit?: string }): Promise<number> {
  if (opts.junit) assertOutput(opts.junit, "--junit");
  const room = loadRoom(file);
  if (!room) return EXIT.invalid;
  const rows = new Map<string, RollUpRow>();
  for (const l of room.labs) {
    const up = await labIsUp(l.lab);
    const applied = readOptionalText(labPaths(l.lab.name).scenario, STATE_FILE);
    const scenario = applied === undefined ? undefined : (JSON.parse(applied) as { id: string; hidden?: boolean });
    rows.set(l.learner, {
      learner: l.learner,
      lab: l.lab.name,
      up,
      verdicts: {},
      ...(scenario ? { scenario: scenario.hidden ? "(hidden)" : scenario.id } : {}),
    });
  }
  const upRoom = { ...room, labs: room.labs.filter((l) => rows.get(l.learner)!.up) };
  await eachLab(upRoom, ["probe", "--json"], (l, _code, _s, out) => {
    try {
      const report = JSON.parse(out) as ProbeReport;
      for (const r of report.results) rows.get(l.learner)!.verdicts[r.tier] = r.verdict;
    } catch {
      /* no report: the row shows no verdicts */
    }
  });
  const all = [...rows.values()];
  process.stdout.write(opts.json ? `${JSON.stringify({ room: room.name, labs: all }, null, 2)}\n` : renderRollUp(all));
  if (opts.junit) writeOutput(opts.junit, renderRollUpJunit(room.name, all), "--junit");
  return all.every((r) => r.up && TIER_IDS.every((t) => ["pass", "skipped"].includes(r.verdicts[t] ?? ""))) ? EXIT.ok : EXIT.failed;
}

/**
 * `k8slab reset LAB`: the quickest way back to healthy. A scenario applied: its undo, probing until
 * every tier passes (no rebuild). Otherwise, or when that is not enough: `up`, which repairs what
 * Pulumi owns and starts stopped VMs again.
 */
export async function resetCommand(labFile: string): Promise<number> {
  const lab = labOrProblems(labFile);
  if (!lab) return EXIT.invalid;
  const scenarios = await import("./scenarios/command.ts");
  if (fs.existsSync(labPaths(lab.name).scenario)) {
    say(`k8slab reset: undoing the scenario applied to ${lab.name}`);
    if ((await scenarios.fixCommand(labFile, { waitSec: 60 })) === EXIT.ok) return EXIT.ok;
  }
  say(`k8slab reset: repairing ${lab.name} with up`);
  return (await import("./lifecycle.ts")).up(labFile);
}

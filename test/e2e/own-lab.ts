// The end-to-end tests' own labs: made from a lab file of the repo (or a room file) under a name of
// their own, e2e-<name>, with their 127.0.0.1 ports moved by E2E_PORT_OFFSET, so a test never stands
// up, breaks or takes down a developer's lab (labs/two-node.yaml's two-node, a room's ct-l1, ...), and
// its lab can run beside theirs. The names and ports are fixed, so a run finds (and takes down, or
// with K8SLAB_E2E_REUSE=1 reuses) what an earlier run left. The derivations are pure (unit-tested in
// test/e2e-own-lab.test.ts); ownLab and ownRoom write the files where k8slab keeps state.
import fs from "node:fs";
import path from "node:path";
import yaml from "js-yaml";
import { type Lab, parseLab } from "../../core/lab.ts";
import { stateRoot } from "../../core/paths.ts";
import { derivedLabText, roomSchema } from "../../core/room.ts";
import { type OwnedDriver, ownsMachines } from "../../core/schema.ts";
import { loadLab } from "../../scripts/lab-file.ts";
import { repoRoot } from "../../scripts/toolchain/paths.ts";

/** Every lab (and room) an end-to-end test makes or takes down is named so; nothing else is ever taken down. */
export const E2E_PREFIX = "e2e-";
/**
 * Added to a template's sshPortBase and apiServerPort. Past the repo's labs (2221-2242, 16443-16453)
 * and the rooms made from them with their default offset (100, up to 64 learners: to 2469 and 16616).
 */
export const E2E_PORT_OFFSET = 1000;

/** The machine layer's container e2e (machines-container.e2e.ts, lab e2e-ct): its ports, in the e2e range too. */
export const MACHINES_CT_PORTS = { sshPortBase: 3301, apiServerPort: 17600 } as const;

export const isOwnName = (name: string) => name.startsWith(E2E_PREFIX);

/** An end-to-end test's own lab from a template lab file's text: e2e-<its name>, its ports moved. Throws on a template it cannot use. */
export function ownLabText(templateText: string, templateFile: string): { name: string; text: string } {
  const template = parseLab(templateText, templateFile);
  if (!template.ok) throw new Error(`${templateFile}: ${template.problems.map((p) => `${p.path}: ${p.reason}`).join("; ")}`);
  if (!ownsMachines(template.lab)) throw new Error(`${templateFile}: an e2e lab runs on machines k8slab makes (driver qemu or container)`);
  const driver = template.lab.driver as OwnedDriver;
  const name = `${E2E_PREFIX}${template.lab.name}`;
  const text = derivedLabText(
    templateText,
    name,
    { sshPortBase: driver.sshPortBase + E2E_PORT_OFFSET, apiServerPort: driver.apiServerPort + E2E_PORT_OFFSET },
    `An end-to-end test's own lab, made from ${templateFile} (test/e2e/own-lab.ts writes it again).`,
  );
  const derived = parseLab(text, `${name}.yaml`);
  if (!derived.ok) throw new Error(`${templateFile} as ${name}: ${derived.problems.map((p) => `${p.path}: ${p.reason}`).join("; ")}`);
  return { name, text };
}

/**
 * An end-to-end test's own room from a room file's text: e2e-<its name> (so its labs are e2e-<name>-<learner>),
 * its template named by absolute path (the file is written elsewhere), its port offset moved by E2E_PORT_OFFSET.
 */
export function ownRoomText(roomText: string, roomFile: string): { name: string; text: string } {
  const parsed = roomSchema.safeParse(yaml.load(roomText, { schema: yaml.CORE_SCHEMA }) ?? {});
  if (!parsed.success) throw new Error(`${roomFile}: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  const room = parsed.data;
  const name = `${E2E_PREFIX}${room.name}`;
  const doc = { ...room, name, template: path.resolve(path.dirname(roomFile), room.template), portOffset: room.portOffset + E2E_PORT_OFFSET };
  return { name, text: `# An end-to-end test's own room, made from ${roomFile} (test/e2e/own-lab.ts writes it again).\n${yaml.dump(doc, { lineWidth: 120 })}` };
}

/**
 * Why `k8slab down <args>` is not for an end-to-end test to run (the lab or room file it names is not of
 * the tests' own names), or undefined when it is. Paths are taken from the repo's root, as k8slab's cwd.
 */
export function notOwnTarget(args: readonly string[]): string | undefined {
  const room = args[0] === "--room";
  const file = path.resolve(repoRoot, (room ? args[1] : args[0]) ?? "");
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    return `${file}: ${(err as Error).message}`;
  }
  const name = /^name:\s*["']?([^\s"'#]+)/m.exec(text)?.[1] ?? "";
  return isOwnName(name) ? undefined : `an e2e test takes down only its own labs: ${file} names ${room ? "room" : "lab"} "${name}"`;
}

/** Where the own lab and room files are written (beside k8slab's state, outside any lab's folder, which `down` removes). */
export const ownDir = () => path.join(stateRoot(), "e2e");

function write(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, text);
}

/** Writes the own lab made from `template` (a path in the repo) and loads it: its file (absolute) and Lab. */
export function ownLab(template: string): { file: string; lab: Lab } {
  const source = path.resolve(repoRoot, template);
  const { name, text } = ownLabText(fs.readFileSync(source, "utf8"), template);
  const file = path.join(ownDir(), `${name}.yaml`);
  write(file, text);
  const loaded = loadLab(file);
  if (!loaded.ok) throw new Error(`${file}: ${loaded.problems.map((p) => `${p.path}: ${p.reason}`).join("; ")}`);
  return { file, lab: loaded.lab };
}

/** Writes the own room made from `roomFile` (a path in the repo): its file (absolute) and name. */
export function ownRoom(roomFile: string): { file: string; name: string } {
  const source = path.resolve(repoRoot, roomFile);
  const { name, text } = ownRoomText(fs.readFileSync(source, "utf8"), source);
  const file = path.join(ownDir(), `${name}.room.yaml`);
  write(file, text);
  return { file, name };
}

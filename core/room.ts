// A room: one lab per learner, all from one template lab file. Each learner's lab gets its own name
// (room-learner: its namespace and Pulumi stack), and its own 127.0.0.1 ports; its LAN, pod and Service
// addresses stay the template's: each lab lives in a network namespace of its own, so they never
// meet each other or the host's network. Pure: the room file's text and the template's in, every
// learner's lab file text and Lab out, or the problems.

import yaml from "js-yaml";
import { z } from "zod";
import { type Lab, type Problem, parseLab } from "./lab.ts";
import { dnsLabel, type OwnedDriver, ownsMachines } from "./schema.ts";

export const roomSchema = z.strictObject({
  name: dnsLabel.describe("Names every lab of the room: <name>-<learner>."),
  template: z.string().min(1).describe("The lab file every learner's lab is made from, relative to the room file."),
  learners: z.array(dnsLabel).min(1).optional().describe("The learners' names (each names a lab)."),
  count: z.int().min(1).max(64).optional().describe("Or just how many: learners l1, l2, ..."),
  /** Labs brought up (or probed, or taken down) at once. */
  parallel: z.int().min(1).max(16).default(2),
  /** Added to the template's sshPortBase and apiServerPort so no room lab takes the template lab's own ports. */
  portOffset: z.int().min(0).max(60000).default(100),
});
export type RoomFile = z.infer<typeof roomSchema>;

export interface RoomLab {
  learner: string;
  /** The lab file text k8slab writes for this learner (its own name and ports). */
  text: string;
  lab: Lab;
}

export interface Room {
  name: string;
  parallel: number;
  labs: RoomLab[];
}

/**
 * A lab file's text under another name, its 127.0.0.1 ports (sshPortBase, apiServerPort) moved: a
 * room's learner, an end-to-end test's own lab. Everything else stays the template's; `header` is its
 * first line, a comment. The template must be a valid lab file that owns its machines.
 */
export function derivedLabText(templateText: string, name: string, ports: { sshPortBase: number; apiServerPort: number }, header: string): string {
  const base = yaml.load(templateText, { schema: yaml.CORE_SCHEMA }) as Record<string, any>;
  const doc = { ...base, name, driver: { ...(base.driver ?? { kind: "qemu" }), ...ports } };
  return `# ${header}\n${yaml.dump(doc, { lineWidth: 120 })}`;
}

/** The learners of a room file: its names, or l1..lN. */
export const learnersOf = (r: RoomFile) => r.learners ?? Array.from({ length: r.count ?? 0 }, (_, i) => `l${i + 1}`);

/**
 * Every learner's lab from the template. `labFile(learner)` says where k8slab keeps each derived
 * file (its problems and its Lab name that path). Problems name the room file's field or the learner.
 */
export function parseRoom(
  text: string,
  file: string,
  templateText: string,
  labFile: (learner: string) => string,
): { ok: true; room: Room } | { ok: false; problems: Problem[] } {
  let raw: unknown;
  try {
    raw = yaml.load(text, { schema: yaml.CORE_SCHEMA });
  } catch (err) {
    return { ok: false, problems: [{ path: file, reason: (err as yaml.YAMLException).reason ?? (err as Error).message }] };
  }
  const parsed = roomSchema.safeParse(raw ?? {});
  if (!parsed.success) return { ok: false, problems: parsed.error.issues.map((i) => ({ path: i.path.join(".") || "(room)", reason: i.message })) };
  const r = parsed.data;
  const problems: Problem[] = [];
  if (!!r.learners === (r.count !== undefined)) problems.push({ path: "learners", reason: "give the learners' names or a count, one of the two" });
  const learners = learnersOf(r);
  const dup = learners.find((l, i) => learners.indexOf(l) !== i);
  if (dup) problems.push({ path: "learners", reason: `${dup} is named twice` });
  const template = parseLab(templateText, r.template);
  if (!template.ok)
    return { ok: false, problems: [...problems, ...template.problems.map((p) => ({ path: `template ${r.template}: ${p.path}`, reason: p.reason }))] };
  if (!ownsMachines(template.lab))
    problems.push({ path: "template", reason: "a room's labs run on machines k8slab makes (driver qemu or container); existing hosts cannot be shared out" });
  if (problems.length) return { ok: false, problems };

  const driver = template.lab.driver as OwnedDriver;
  const nodes = template.lab.nodes.length;
  const labs: RoomLab[] = [];
  learners.forEach((learner, i) => {
    const text = derivedLabText(
      templateText,
      `${r.name}-${learner}`,
      { sshPortBase: driver.sshPortBase + r.portOffset + i * nodes, apiServerPort: driver.apiServerPort + r.portOffset + i },
      `k8slab room ${r.name}, learner ${learner}: made from ${r.template}; \`k8slab up --room\` writes it again.`,
    );
    const lab = parseLab(text, labFile(learner));
    if (!lab.ok) for (const p of lab.problems) problems.push({ path: `learners.${learner}: ${p.path}`, reason: p.reason });
    else labs.push({ learner, text, lab: lab.lab });
  });
  // The labs' forwarded ports on 127.0.0.1 must all differ.
  const owner = new Map<number, string>();
  for (const { learner, lab } of labs) {
    const d = lab.driver as typeof driver;
    for (const port of [...lab.nodes.map((_, j) => d.sshPortBase + j), d.apiServerPort]) {
      const other = owner.get(port);
      if (other && other !== learner) problems.push({ path: `learners.${learner}`, reason: `port ${port} is also ${other}'s` });
      owner.set(port, learner);
    }
  }
  return problems.length ? { ok: false, problems } : { ok: true, room: { name: r.name, parallel: r.parallel, labs } };
}

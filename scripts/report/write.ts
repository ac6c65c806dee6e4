// Writes an HTML page with the lab's live topology read just before (its own agents, closed after).
import fs from "node:fs";
import type { Lab } from "../../core/index.ts";
import { liveAccess } from "../probes/live.ts";
import type { LiveTopology } from "./html.ts";
import { readTopology } from "./live.ts";

export async function writeHtml(file: string, lab: Lab, render: (live: LiveTopology) => string): Promise<void> {
  const access = liveAccess(lab);
  try {
    fs.writeFileSync(file, render(await readTopology(lab, access)));
  } finally {
    await access.close();
  }
  process.stderr.write(`HTML report: ${file}\n`);
}

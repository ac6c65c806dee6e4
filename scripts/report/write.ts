// Writes an HTML page with the lab's live topology read just before (its own agents, closed after).
import type { Lab } from "../../core/index.ts";
import { liveAccess } from "../probes/live.ts";
import { writeOutput } from "../user-file.ts";
import type { LiveTopology } from "./html.ts";
import { readTopology } from "./live.ts";

export async function writeHtml(file: string, lab: Lab, render: (live: LiveTopology) => string): Promise<void> {
  const access = liveAccess(lab);
  try {
    writeOutput(file, render(await readTopology(lab, access)), "--html");
  } finally {
    await access.close();
  }
  process.stderr.write(`HTML report: ${file}\n`);
}

import "../quiet-bash.ts";
import fs from "node:fs";
import { loadLab } from "../lab-file.ts";
import { liveAccess } from "../probes/live.ts";
import { collect } from "../snapshot/collect.ts";

const l = loadLab("/work/i13/labs/two-node.yaml");
if (!l.ok) throw 1;
const access = liveAccess(l.lab);
const t0 = Date.now();
const raw = await collect(l.lab, access);
await access.close();
console.log("collect", (Date.now() - t0) / 1000, "s");
fs.writeFileSync(process.argv[2], JSON.stringify(raw, null, 1));

import fs from "node:fs";
import yaml from "js-yaml";
import { loadLab } from "../lab-file.ts";
import { canonicalize } from "./canonical.ts";

const l = loadLab("labs/two-node.yaml");
if (!l.ok) throw 1;
const raw = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
console.log(yaml.dump(canonicalize(l.lab, raw), { lineWidth: -1, noRefs: true }));

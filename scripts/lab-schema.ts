// Writes labs/lab.schema.json from the lab schema (run: npm run schema); a test keeps the two in step.
import { writeFileSync } from "node:fs";
import path from "node:path";
import { labJsonSchema } from "../core/index.ts";

const target = path.join(import.meta.dirname, "../labs/lab.schema.json");
writeFileSync(target, labJsonSchema());
console.log(`wrote ${path.relative(process.cwd(), target)}`);

// labs/lab.schema.json is generated from the zod schema; this keeps the committed copy current.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { labJsonSchema } from "../core/index.ts";

test("labs/lab.schema.json matches the schema (regenerate with `npm run schema`)", () => {
  const committed = readFileSync(path.join(import.meta.dirname, "../labs/lab.schema.json"), "utf8");
  assert.equal(committed, labJsonSchema());
});

test("the JSON Schema is strict about unknown keys", () => {
  const schema = JSON.parse(labJsonSchema());
  assert.equal(schema.additionalProperties, false);
  assert.deepEqual(schema.required.sort(), ["ingress", "lan", "name", "nodes", "pods", "services", "workloads"]);
});

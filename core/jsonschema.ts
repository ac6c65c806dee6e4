// The JSON Schema of lab files, generated from the zod schema so editors and k8slab agree.
import { z } from "zod";
import { labFileSchema } from "./schema.ts";

export function labJsonSchema(): string {
  const schema = z.toJSONSchema(labFileSchema, { io: "input", target: "draft-2020-12", unrepresentable: "any" });
  return `${JSON.stringify({ ...schema, title: "k8slab lab file" }, null, 2)}\n`;
}

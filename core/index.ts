// The lab model: what a lab file may say, how it is checked, and the values derived from it.

export { labJsonSchema } from "./jsonschema.ts";
export { formatPath, type Lab, type LabNode, type LoadResult, type Problem, parseLab } from "./lab.ts";
export { type Driver, type OwnedDriver, ownsMachines } from "./schema.ts";

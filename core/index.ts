// The lab model: what a lab file may say, how it is checked, and the values derived from it.
export { parseLab, formatPath, VXLAN_OVERHEAD, type Lab, type LabNode, type Problem, type LoadResult } from "./lab.js";
export { labJsonSchema } from "./jsonschema.js";

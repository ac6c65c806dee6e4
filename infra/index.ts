// The Pulumi program: the only place that reads stack config. Loads the lab, builds its tiers, exports outputs.
import * as pulumi from "@pulumi/pulumi";
import { loadLab } from "./lab/index.js";
import { buildLab } from "./program.js";
import type { Machines } from "./tiers/machines.js";

const config = new pulumi.Config("k8slab");
const labFile = config.get("lab") ?? "labs/two-node.yaml";
const loaded = loadLab(labFile);
if (!loaded.ok) {
  throw new Error(`lab file ${labFile} is not valid:\n${loaded.problems.map((p) => `  ${p.path}: ${p.reason}`).join("\n")}`);
}
const { lab } = loaded;
const [machines] = buildLab(lab) as [Machines];

export const labName = lab.name;
export const netns = lab.netns;
export const apiServerEndpoint = machines.apiServerEndpoint;
export const nodes = lab.nodes.map((n) => ({
  name: n.name,
  address: n.address,
  podSubnet: n.podSubnet,
  roles: n.roles,
  ssh: machines.sshEndpoints[n.name],
}));

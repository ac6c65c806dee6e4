// The Pulumi program: the only place that reads stack config. Loads the lab, builds its tiers, exports outputs.
import { existsSync } from "node:fs";
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { readLabImages } from "../scripts/images/build.ts";
import { readContainerdStore } from "../scripts/images/store.ts";
import { loadLab } from "../scripts/lab-file.ts";
import { CERTIFICATES_RENEWED_KEY } from "../scripts/pki/catalog.ts";
import { readState, recordedFiles } from "../scripts/toolchain/bundle.ts";
import { bundleDiskFile, bundleDiskKey } from "../scripts/toolchain/bundle-disk.ts";
import { repoRoot, stateFile } from "../scripts/toolchain/paths.ts";
import { buildLab } from "./program.ts";

const config = new pulumi.Config("k8slab");
const labFile = config.get("lab") ?? "labs/two-node.yaml";
// Lab paths in config are relative to the project root, wherever the engine starts the program.
const loaded = loadLab(path.resolve(repoRoot, labFile));
if (!loaded.ok) {
  throw new Error(`lab file ${labFile} is not valid:\n${loaded.problems.map((p) => `  ${p.path}: ${p.reason}`).join("\n")}`);
}
const { lab } = loaded;
// The bundle's checksums: a rebuilt binary is pushed to the nodes again.
const bundleFiles = recordedFiles(await readState(stateFile()));
// The container images `k8slab up` built last (scripts/images): a rebuilt one is loaded again.
const images = readLabImages();
const containerdStore = readContainerdStore()?.file;
// The bundle disk `up` made for these very binaries, if it did.
const bundleDiskKeyNow = bundleDiskKey(bundleFiles);
const bundleDisk =
  bundleDiskKeyNow && existsSync(bundleDiskFile(bundleDiskKeyNow)) ? { key: bundleDiskKeyNow, file: bundleDiskFile(bundleDiskKeyNow) } : undefined;
const certificatesRenewed = config.get(CERTIFICATES_RENEWED_KEY);
const { machines, "control-plane": controlPlane } = buildLab(lab, { bundleFiles, images, containerdStore, bundleDisk, certificatesRenewed });

export const labName = lab.name;
export const netns = lab.netns;
export const apiServerEndpoint = machines.apiServerEndpoint;
export const kubeconfig = controlPlane.kubeconfig;
export const kubeconfigFile = controlPlane.kubeconfigFile;
export const nodes = lab.nodes.map((n) => ({
  name: n.name,
  address: n.address,
  podSubnet: n.podSubnet,
  roles: n.roles,
  ssh: machines.connections[n.name],
}));

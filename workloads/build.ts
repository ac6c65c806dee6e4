// Bundles each workload into one self-contained .mjs file, the only file its container image needs.
// Usage: tsx workloads/build.ts [OUT_DIR]   (default ~/.cache/k8slab/workloads)
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { build } from "esbuild";
import { PROTO_DIR, PROTO_FILES } from "./shared/protos.ts";

const APPS = ["data-product", "business-manager", "ingress-adapter"];
const repoRoot = path.join(import.meta.dirname, "..");
const outDir = path.resolve(process.argv[2] ?? path.join(os.homedir(), ".cache/k8slab/workloads"));

// The .proto texts travel inside the bundle; shared/protos.ts picks them up by this name.
const embeddedProtos = Object.fromEntries(PROTO_FILES.map((file) => [file, fs.readFileSync(path.join(PROTO_DIR, file), "utf8")]));

fs.mkdirSync(outDir, { recursive: true });
const sums: string[] = [];
for (const app of APPS) {
  const outfile = path.join(outDir, `${app}.mjs`);
  await build({
    entryPoints: [path.join(repoRoot, "workloads", app, "main.ts")],
    outfile,
    bundle: true,
    platform: "node",
    // Debian trixie ships Node 20; the bundle must not need anything newer.
    target: "node20",
    format: "esm",
    // grpc-js and protobufjs are CommonJS and call require("fs") and friends; an ES
    // module has no `require`, so the bundle makes one.
    banner: { js: `import { createRequire } from "node:module"; const require = createRequire(import.meta.url);` },
    // A string, not an object: esbuild inlines a string where it is used, but injects an object into every module.
    define: { K8SLAB_EMBEDDED_PROTOS: JSON.stringify(JSON.stringify(embeddedProtos)) },
    // Paths in the bundle's comments are relative to the repo, so the same sources give the same
    // sha256 anywhere, even when node_modules is a symlink to another checkout's.
    absWorkingDir: repoRoot,
    preserveSymlinks: true,
    logLevel: "warning",
  });
  const bytes = fs.readFileSync(outfile);
  const sha256 = crypto.createHash("sha256").update(bytes).digest("hex");
  sums.push(`${sha256}  ${path.basename(outfile)}`);
  console.log(`${outfile}  sha256:${sha256}  ${(bytes.length / 1024).toFixed(0)} KiB`);
}
// `sha256sum -c SHA256SUMS` in the output directory checks the bundles before an image is built.
fs.writeFileSync(path.join(outDir, "SHA256SUMS"), `${sums.join("\n")}\n`);

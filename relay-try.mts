import { startApiRelay } from "./scripts/probes/api-relay.ts";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
const run = promisify(execFile);
const r = await startApiRelay("/root/.local/state/k8slab/labs/two-node/admin.kubeconfig", async () => 60);
for (let i = 0; i < 3; i++) {
  const t = Date.now();
  try {
    const o = await run("/root/.cache/k8slab/bundle-v1/bin/kubectl", [`--kubeconfig=${r.kubeconfig}`, "get", "nodes"], { encoding: "utf8" });
    console.log(Date.now() - t, "ms", o.stdout.trim().split("\n").length, "lines");
  } catch (e) { console.log("ERR", String((e as any).stderr).slice(0, 400)); }
}
await r.close();

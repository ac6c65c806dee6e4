// containerd itself loads an archive from oci.ts and names it from index.json. Needs root and containerd + ctr
// (on PATH, or in K8SLAB_CONTAINERD_BIN); skipped otherwise. A private containerd on a temp socket, the test's own
// (test/owned.ts): a process group of its own, stopped after, killed by the kernel if the test's process dies first.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, it } from "node:test";
import { buildOciArchive } from "../scripts/images/oci.ts";
import { atAbnormalEnd, type Owned, spawnOwned, withDeathSignal } from "./owned.ts";

function findBin(name: string): string | undefined {
  const dirs = [process.env.K8SLAB_CONTAINERD_BIN, ...(process.env.PATH ?? "").split(":")].filter(Boolean) as string[];
  return dirs.map((d) => path.join(d, name)).find((p) => fs.existsSync(p));
}
const containerd = findBin("containerd");
const ctr = findBin("ctr");
const skip = process.getuid?.() !== 0 ? "needs root" : !containerd || !ctr ? "no containerd/ctr (set K8SLAB_CONTAINERD_BIN)" : false;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-ctr-"));
// Stopped with no `after` (a signal, the runner gone): containerd is stopped by then (owned.ts), its folder goes too.
atAbnormalEnd(() => fs.rmSync(tmp, { recursive: true, force: true }));
let daemon: Owned | undefined;
after(async () => {
  await daemon?.stop("SIGTERM", 10_000);
  // containerd may leave its snapshot mounts behind for a moment; only our own temp dir is removed.
  try {
    fs.rmSync(tmp, { recursive: true, force: true });
  } catch {
    /* left for the OS's tmp cleaning */
  }
});

it("ctr -n k8s.io images import loads the archive under the ref in index.json", { skip, timeout: 60_000 }, async () => {
  const tree = path.join(tmp, "tree");
  fs.mkdirSync(path.join(tree, "etc"), { recursive: true });
  fs.writeFileSync(path.join(tree, "etc/greeting"), "hello\n");
  const a = await buildOciArchive({
    trees: [tree],
    ref: { name: "k8slab.local/ctr-check", tag: "t1" },
    run: { cmd: ["/bin/true"] },
    archive: path.join(tmp, "a.oci.tar"),
  });

  const sock = path.join(tmp, "containerd.sock");
  fs.writeFileSync(
    path.join(tmp, "config.toml"),
    `version = 2\nroot = "${tmp}/root"\nstate = "${tmp}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${sock}"\n`,
  );
  daemon = spawnOwned(containerd!, ["--config", path.join(tmp, "config.toml")], { stdio: "ignore" });
  for (let i = 0; i < 100 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
  // ctr too dies with the test's process (a client left waiting on a containerd that is gone would not end).
  const run = (...args: string[]) => {
    const [file, ...argv] = withDeathSignal("KILL", ctr!, ["-a", sock, "-n", "k8s.io", ...args]);
    return execFileSync(file, argv, { encoding: "utf8", timeout: 60_000 });
  };

  run("images", "import", a.archive);
  assert.ok(run("images", "ls", "-q").split("\n").includes("k8slab.local/ctr-check:t1"));
  const line = run("images", "ls")
    .split("\n")
    .find((l) => l.startsWith("k8slab.local/ctr-check:t1"))!;
  assert.ok(line.includes(a.manifestDigest), line);
  assert.ok(line.includes("linux/amd64"), line);
});

// The disks a VM gets made on the host: the containerd store (scripts/images/store.ts) and how a node loads only the
// images it lacks; the bundle disk (scripts/toolchain/bundle-disk.ts) and how a node takes its binaries from it.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { CONTAINERD_STORE_LABEL } from "../core/names.ts";
import { NODE_BUNDLE_FILES } from "../core/node.ts";
import { nodeAgentFiles } from "../infra/render/index.ts";
import { pushBundleCommand } from "../infra/tiers/machines.ts";
import { importImagesCommand } from "../infra/tiers/node-agents.ts";
import { containerdVersion, presentImages, storeKey } from "../scripts/images/store.ts";
import { loadLab } from "../scripts/lab-file.ts";
import { BUNDLE_DISK_INDEX, bundleDiskKey, ensureBundleDisk } from "../scripts/toolchain/bundle-disk.ts";

const img = (name: string, digest: string) => ({
  ref: `k8slab.local/${name}:v1`,
  archive: `/a/${name}.oci.tar`,
  sha256: "x",
  manifestDigest: `sha256:${digest}`,
});
const LISTING = `REF                      TYPE                                       DIGEST     SIZE     PLATFORMS   LABELS
k8slab.local/pause:v1    application/vnd.oci.image.manifest.v1+json sha256:aa  709.8 KiB linux/amd64 -
k8slab.local/coredns:v1  application/vnd.oci.image.manifest.v1+json sha256:old 22.6 MiB  linux/amd64 -
`;

describe("containerd store", () => {
  it("reads ctr's listing as ref@digest", () => {
    assert.deepEqual(presentImages(LISTING), ["k8slab.local/pause:v1@sha256:aa", "k8slab.local/coredns:v1@sha256:old"]);
    assert.deepEqual(presentImages("REF TYPE DIGEST SIZE PLATFORMS LABELS\n"), []);
  });

  it("is keyed by every image's digest and the nodes' containerd, not by their order", () => {
    const a = { pause: img("pause", "aa"), coredns: img("coredns", "bb") };
    const key = storeKey(a, "1.7.24~ds1-6");
    assert.match(key, /^ctrd-[0-9a-f]{16}$/);
    assert.equal(storeKey({ coredns: a.coredns, pause: a.pause }, "1.7.24~ds1-6"), key);
    assert.notEqual(storeKey({ ...a, coredns: img("coredns", "cc") }, "1.7.24~ds1-6"), key);
    assert.notEqual(storeKey(a, "1.7.25"), key);
  });

  it("unpacks with the node image's own containerd package", () => {
    assert.equal(containerdVersion({ installed: ["conntrack 1:1.4.8-2", "containerd 1.7.24~ds1-6+deb13u1", "containerd-shim x"] }), "1.7.24~ds1-6+deb13u1");
    assert.equal(containerdVersion({ installed: ["runc 1.1"] }), undefined);
  });

  it("is mounted before containerd starts on VM nodes only, by its label", () => {
    const dropIn = (file: string) => {
      const loaded = loadLab(path.join(import.meta.dirname, "..", "labs", file));
      assert.ok(loaded.ok);
      return nodeAgentFiles(loaded.lab, loaded.lab.nodes[0], "pause").find((f) => f.path.includes("containerd.service.d"));
    };
    const vm = dropIn("two-node.yaml");
    assert.ok(vm?.readBy.includes("containerd"));
    assert.match(vm?.content ?? "", new RegExp(`mount -o noatime LABEL=${CONTAINERD_STORE_LABEL} /var/lib/containerd`));
    assert.equal(dropIn("container-two-node.yaml"), undefined);
  });
});

describe("a node's images", () => {
  // A fake ssh on PATH plays the node: it lists LISTING and records each import's bytes.
  function run(images: ReturnType<typeof img>[], importExit = 0) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-import-"));
    const log = path.join(dir, "imports");
    fs.writeFileSync(path.join(dir, "listing"), LISTING);
    fs.writeFileSync(
      path.join(dir, "ssh"),
      `#!/bin/sh\nfor last; do :; done\ncase "$last" in\n*"images ls"*) cat ${dir}/listing ;;\n*"images import"*) wc -c >> ${log}; exit ${importExit} ;;\nesac\n`,
      { mode: 0o755 },
    );
    for (const i of images) fs.writeFileSync(path.join(dir, path.basename(i.archive)), i.ref);
    const local = images.map((i) => ({ ...i, archive: path.join(dir, path.basename(i.archive)) }));
    const script = importImagesCommand(local, { host: "127.0.0.1", port: 2221, user: "root", keyFile: "/k", knownHostsFile: "/kh" });
    try {
      const out = execFileSync("bash", ["-c", script], { encoding: "utf8", env: { ...process.env, PATH: `${dir}:${process.env.PATH}` } });
      return { out, imports: fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim().split("\n").length : 0, exit: 0 };
    } catch (e) {
      return { out: String((e as { stdout?: string }).stdout ?? ""), imports: 0, exit: (e as { status: number }).status };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  it("loads only what the node lacks: a missing ref or another digest of the same ref", () => {
    const r = run([img("pause", "aa"), img("coredns", "new"), img("toolbox", "tt")]);
    assert.equal(r.exit, 0);
    assert.match(r.out, /k8slab\.local\/pause:v1: in the node's store/);
    assert.match(r.out, /k8slab\.local\/coredns:v1: imported/);
    assert.match(r.out, /k8slab\.local\/toolbox:v1: imported/);
    assert.equal(r.imports, 2);
  });

  it("fails when an import fails", () => {
    assert.notEqual(run([img("toolbox", "tt")], 1).exit, 0);
  });
});

describe("bundle disk", () => {
  const hashes = Object.fromEntries(NODE_BUNDLE_FILES.map((f) => [f, `sha-${f}`]));

  it("is keyed by every node binary's hash, and there is none while one is missing", () => {
    const key = bundleDiskKey(hashes);
    assert.match(key ?? "", /^bundle-[0-9a-f]{16}$/);
    assert.notEqual(bundleDiskKey({ ...hashes, "bin/kubelet": "other" }), key);
    assert.equal(bundleDiskKey({ ...hashes, "bin/kubelet": "" }), undefined);
  });

  it("holds every node binary and its index in an ext4 image labelled for the node to mount", {
    skip: process.getuid?.() === 0 ? false : "needs root (debugfs reads the image)",
  }, async () => {
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-bundle-disk-"));
    const before = process.env.K8SLAB_CACHE;
    process.env.K8SLAB_CACHE = cache;
    try {
      for (const f of NODE_BUNDLE_FILES) {
        fs.mkdirSync(path.dirname(path.join(cache, "bundle-v1", f)), { recursive: true });
        fs.writeFileSync(path.join(cache, "bundle-v1", f), `#!/bin/sh\necho ${f}\n`, { mode: 0o755 });
      }
      const disk = await ensureBundleDisk(hashes);
      assert.ok(disk && !disk.reused);
      assert.equal(execFileSync("blkid", ["-o", "value", "-s", "LABEL", disk.file], { encoding: "utf8" }).trim(), "k8slab-bundle");
      const cat = (f: string) => execFileSync("debugfs", ["-R", `cat /${f}`, disk.file], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
      assert.equal(cat("bin/kubelet"), "#!/bin/sh\necho bin/kubelet\n");
      assert.equal(JSON.parse(cat(BUNDLE_DISK_INDEX)).key, disk.key);
      assert.equal((await ensureBundleDisk(hashes))?.reused, true);
    } finally {
      if (before === undefined) delete process.env.K8SLAB_CACHE;
      else process.env.K8SLAB_CACHE = before;
      fs.rmSync(cache, { recursive: true, force: true });
    }
  });

  // A fake ssh plays the node: exit 0 for the install from the disk, or 3 (no such disk); it records what it ran.
  function push(diskExit: number) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-push-"));
    const log = path.join(dir, "ran");
    fs.writeFileSync(
      path.join(dir, "ssh"),
      `#!/bin/sh\nfor last; do :; done\necho "$last" >> ${log}\ncase "$last" in *"tar -C /"*) cat > /dev/null ;; *) exit ${diskExit} ;; esac\n`,
      { mode: 0o755 },
    );
    const script = pushBundleCommand(
      ["bin/kubelet", "cni/bin/bridge"],
      { host: "127.0.0.1", port: 2221, user: "root", keyFile: "/k", knownHostsFile: "/kh" },
      "bundle-0123456789abcdef",
    );
    try {
      const out = execFileSync("bash", ["-c", script], {
        encoding: "utf8",
        env: { ...process.env, PATH: `${dir}:${process.env.PATH}` },
        stdio: ["ignore", "pipe", "pipe"],
      });
      return { out, ran: fs.readFileSync(log, "utf8") };
    } catch (e) {
      return { out: "", ran: fs.existsSync(log) ? fs.readFileSync(log, "utf8") : "", error: String(e) };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  it("installs the node's binaries from the disk when it is the expected one, without a tar stream", () => {
    const r = push(0);
    assert.match(r.out, /installed from the bundle disk bundle-0123456789abcdef/);
    assert.match(r.ran, /grep -qF '"key": "bundle-0123456789abcdef"' bundle-disk\.json/);
    assert.match(r.ran, /install -m 0755 -t \/usr\/local\/bin bin\/kubelet/);
    assert.match(r.ran, /install -m 0755 -t \/opt\/cni\/bin cni\/bin\/bridge/);
    assert.doesNotMatch(r.ran, /tar -C \//);
  });

  it("falls back to the tar stream over ssh when the node has no such disk", () => {
    const r = push(3);
    assert.match(r.ran, /tar -C \/ --no-same-owner -xf -/);
  });
});

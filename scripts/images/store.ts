// The lab's container images unpacked once on the host, natively, by the nodes' own containerd (read out of the node
// image), into an ext4 disk image that each VM attaches copy-on-write and mounts at /var/lib/containerd.
// Without it every node receives every archive over ssh and unpacks it under emulation (up's longest step).
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { $ } from "zx";
import { CONTAINERD_STORE_LABEL } from "../../core/names.ts";
import { labPaths, stateRoot, vmPaths } from "../../core/paths.ts";
import { removeTree, withDirLock } from "../files.ts";
import type { ImageManifest } from "../machines/image.ts";
import { imagesRoot, type LabImages } from "./build.ts";

/** Sparse: the pods' writable layers live on this disk too. */
const STORE_SIZE_GIB = 8;
/** Bump when the store's layout or the way it is made changes. */
const STORE_FORMAT = 1;

export interface ContainerdStore {
  key: string;
  /** The ext4 image (raw, sparse); VMs get a qcow2 overlay of it. */
  file: string;
  /** The node image's containerd package version that wrote it. */
  containerd: string;
  /** ref@manifest digest of every image in it. */
  images: string[];
  buildSeconds: number;
}

const storesDir = () => path.join(imagesRoot(), "stores");
const currentFile = () => path.join(imagesRoot(), "containerd-store.json");

/** The containerd version the node image installed ("containerd 1.7.24~ds1-6+deb13u1" in its manifest). */
export function containerdVersion(node: Pick<ImageManifest, "installed">): string | undefined {
  return node.installed.find((l) => l.startsWith("containerd "))?.split(" ")[1];
}

/** The images (by ref and manifest digest) and the containerd that unpacks them: a change of either is a new store. */
export function storeKey(images: LabImages, version: string): string {
  const h = createHash("sha256").update(`format ${STORE_FORMAT}\0containerd ${version}\0`);
  for (const i of Object.values(images).sort((a, b) => a.ref.localeCompare(b.ref))) h.update(`${i.ref}@${i.manifestDigest}\0`);
  return `ctrd-${h.digest("hex").slice(0, 16)}`;
}

const refsOf = (images: LabImages) => Object.values(images).map((i) => `${i.ref}@${i.manifestDigest}`);

/** The store for these images, built when missing; undefined (with the reason) when the node image has no containerd. */
export async function ensureContainerdStore(
  images: LabImages,
  node: Pick<ImageManifest, "installed" | "rootfs">,
  log: (s: string) => void,
): Promise<{ store?: ContainerdStore; reason?: string; reused?: boolean }> {
  const version = containerdVersion(node);
  if (!version) return { reason: "the node image has no containerd package" };
  const key = storeKey(images, version);
  const dir = path.join(storesDir(), key);
  const manifest = path.join(dir, "store.json");
  const found = (): ContainerdStore | undefined =>
    fs.existsSync(manifest) ? { ...(JSON.parse(fs.readFileSync(manifest, "utf8")) as ContainerdStore), file: path.join(dir, "containerd.img") } : undefined;
  const cached = found();
  if (cached) return { store: cached, reused: true };
  const lockDir = storesDir();
  return withDirLock({ dir: lockDir, lockfilePath: path.join(lockDir, "build.lock"), staleMs: 60_000, log, holder: "another store build" }, async () => {
    const again = found();
    if (again) return { store: again, reused: true };
    const started = Date.now();
    const work = `${dir}.build`;
    await removeTree(work);
    fs.mkdirSync(work, { recursive: true });
    try {
      const bin = await containerdOfImage(node.rootfs, work);
      await unpackImages(bin, path.join(work, "root"), images);
      const file = path.join(work, "containerd.img");
      await $`truncate -s ${STORE_SIZE_GIB}G ${file}`.quiet();
      // -d copies owners, modes, xattrs (overlayfs' opaque markers) and the whiteout devices as they are.
      await $`mkfs.ext4 -q -F -L ${CONTAINERD_STORE_LABEL} -E root_owner=0:0 -d ${path.join(work, "root")} ${file}`.quiet();
      const store: ContainerdStore = {
        key,
        file: path.join(dir, "containerd.img"),
        containerd: version,
        images: refsOf(images),
        buildSeconds: (Date.now() - started) / 1000,
      };
      fs.writeFileSync(path.join(work, "store.json"), `${JSON.stringify(store, null, 2)}\n`);
      await removeTree(path.join(work, "root"));
      fs.rmSync(bin, { recursive: true, force: true });
      fs.renameSync(work, dir);
      await pruneStores(key);
      return { store, reused: false };
    } finally {
      await removeTree(work);
    }
  });
}

/**
 * Remove stores other than keep that no VM's containerd.qcow2 is backed by (each is ~0.8 GiB; a lab made with an
 * older one still reads it, so it stays until that lab is down).
 */
async function pruneStores(keep: string): Promise<void> {
  const labs = path.join(stateRoot(), "labs");
  const disks = fs.existsSync(labs)
    ? fs.readdirSync(labs).flatMap((lab) => {
        const vms = labPaths(lab).vms;
        return fs.existsSync(vms) ? fs.readdirSync(vms).map((n) => vmPaths(lab, n).containerdDisk) : [];
      })
    : [];
  const inUse = new Set<string>();
  for (const d of disks.filter((f) => fs.existsSync(f))) {
    const info = await $`qemu-img info -U --output=json ${d}`.nothrow().quiet();
    // Unreadable: keep everything rather than guess.
    if (info.exitCode !== 0) return;
    const backing = JSON.parse(info.stdout)["backing-filename"] as string | undefined;
    if (backing) inUse.add(path.basename(path.dirname(backing)));
  }
  for (const key of fs.readdirSync(storesDir())) {
    if (key !== keep && key.startsWith("ctrd-") && !key.endsWith(".build") && !inUse.has(key))
      fs.rmSync(path.join(storesDir(), key), { recursive: true, force: true });
  }
}

/** containerd and ctr copied out of the node image's ext4 (debugfs reads it unmounted): the very binaries the nodes run. */
async function containerdOfImage(rootfsQcow2: string, work: string): Promise<string> {
  const raw = path.join(work, "rootfs.raw");
  const bin = path.join(work, "bin");
  fs.mkdirSync(bin);
  try {
    await $`qemu-img convert -O raw ${rootfsQcow2} ${raw}`.quiet();
    for (const b of ["containerd", "ctr"]) {
      await $`debugfs -R ${`dump -p /usr/bin/${b} ${path.join(bin, b)}`} ${raw}`.quiet();
      if (!fs.existsSync(path.join(bin, b))) throw new Error(`the node image ${rootfsQcow2} has no /usr/bin/${b}`);
    }
  } finally {
    fs.rmSync(raw, { force: true });
  }
  return bin;
}

/** A containerd of our own on the host (state in a short tmp path: a socket path fits 108 bytes), one import per archive, checked. */
async function unpackImages(bin: string, root: string, images: LabImages): Promise<void> {
  const state = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-ctrd-"));
  const socket = path.join(state, "containerd.sock");
  const config = path.join(state, "config.toml");
  // Only the content store, metadata and snapshotters are used: no CRI, nothing runs.
  fs.writeFileSync(
    config,
    ["version = 2", `root = "${root}"`, `state = "${state}"`, 'disabled_plugins = ["io.containerd.grpc.v1.cri"]', "[grpc]", `  address = "${socket}"`, ""].join(
      "\n",
    ),
  );
  const logFile = path.join(state, "containerd.log");
  const daemon: ChildProcess = spawn(path.join(bin, "containerd"), ["--config", config], {
    stdio: ["ignore", fs.openSync(logFile, "a"), fs.openSync(logFile, "a")],
  });
  const exited = new Promise<void>((resolve) => daemon.once("exit", () => resolve()));
  try {
    for (let i = 0; !fs.existsSync(socket); i++) {
      if (daemon.exitCode !== null || i > 300) throw new Error(`containerd did not start: ${fs.readFileSync(logFile, "utf8").slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const ctr = [path.join(bin, "ctr"), "-a", socket, "-n", "k8s.io"];
    for (const i of Object.values(images)) await $`${ctr} images import ${i.archive}`.quiet();
    const listed = (await $`${ctr} images ls`.quiet()).stdout;
    const have = new Set(presentImages(listed));
    const missing = refsOf(images).filter((r) => !have.has(r));
    if (missing.length) throw new Error(`the store lacks ${missing.join(", ")} after import`);
  } finally {
    daemon.kill("SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill("SIGKILL");
    await removeTree(state);
  }
}

/** `ctr images ls` as ref@digest (columns REF TYPE DIGEST …): what the nodes compare against too. */
export function presentImages(ctrImagesLs: string): string[] {
  return ctrImagesLs
    .trim()
    .split("\n")
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((c) => c.length >= 3)
    .map((c) => `${c[0]}@${c[2]}`);
}

/** Record the store `up` just ensured (or that there is none), for the Pulumi program to read. */
export function writeContainerdStore(store: ContainerdStore | undefined): void {
  fs.mkdirSync(imagesRoot(), { recursive: true });
  if (!store) {
    fs.rmSync(currentFile(), { force: true });
    return;
  }
  const tmp = `${currentFile()}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(store, null, 2)}\n`);
  fs.renameSync(tmp, currentFile());
}

export function readContainerdStore(): ContainerdStore | undefined {
  try {
    return JSON.parse(fs.readFileSync(currentFile(), "utf8")) as ContainerdStore;
  } catch {
    return undefined;
  }
}

// Builds the node OS images from one debootstrap of Debian trixie, in two flavours: "vm" (its kernel+initrd and
// an ext4 qcow2 base disk) and "container" (a plain directory, the read-only lower layer of LXC nodes).
// This file, guest/ and container/ are the images' inputs: their hash is the image key (image.ts), so an edit here rebuilds.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { $ } from "zx";
import { removeTree, sha256File } from "../files.ts";
import { ROOT_LABEL } from "./render.ts";
import { cacheRoot } from "./spec.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
export const guestDir = path.join(here, "guest");
/** Files only the container flavour bakes in (entrypoint, unit drop-ins). */
export const containerDir = path.join(here, "container");

export type Flavour = "vm" | "container";
/** A container runs on the host's kernel: no kernel, no initrd to build. */
export const VM_ONLY_PACKAGES = ["linux-image-amd64", "initramfs-tools"];

export const SUITE = "trixie";
export const MIRROR = process.env.K8SLAB_DEBIAN_MIRROR || "http://deb.debian.org/debian";
/** Size of the base filesystem; overlays see this disk size (sparse, only used blocks are stored). */
export const ROOT_SIZE_GIB = 20;

export interface NodeImage {
  key: string;
  dir: string;
  kernel: string;
  initrd: string;
  rootfs: string;
  kernelVersion: string;
}

export interface ImageManifest extends NodeImage {
  suite: string;
  mirror: string;
  packages: string[];
  /** dpkg -W of the image: "name version" lines. */
  installed: string[];
  rootfsSha256: string;
  builtAt: string;
  buildSeconds: number;
}

/** The image's package list: guest/packages.txt without comments (the container flavour: without the kernel's). */
export function imagePackages(text = fs.readFileSync(path.join(guestDir, "packages.txt"), "utf8"), flavour: Flavour = "vm"): string[] {
  return text
    .split("\n")
    .map((l) => l.replace(/#.*/, "").trim())
    .filter(Boolean)
    .filter((p) => flavour === "vm" || !VM_ONLY_PACKAGES.includes(p));
}

export function imageOf(dir: string, key: string, kernelVersion: string): NodeImage {
  return {
    key,
    dir,
    kernel: path.join(dir, "vmlinuz"),
    initrd: path.join(dir, "initrd.img"),
    rootfs: path.join(dir, "rootfs.qcow2"),
    kernelVersion,
  };
}

function log(line: string) {
  process.stderr.write(`image: ${line}\n`);
}

/** Units Debian enables that a lab node does not want at boot. */
const DISABLED_UNITS = [
  // the ingress controller brings its own nginx config later and needs :80 free
  "nginx.service",
  // nothing to fetch offline, and periodic jobs disturb timing under TCG
  "apt-daily.timer",
  "apt-daily-upgrade.timer",
  "dpkg-db-backup.timer",
  "e2scrub_all.timer",
  "fstrim.timer",
  "man-db.timer",
  // host keys come from the seed disk; on "first boot" this would add RSA/ECDSA keys slowly under TCG
  "sshd-keygen.service",
  // no VGA console (-nodefaults); the serial console is the log
  "getty@tty1.service",
];

/** Units that only cost boot time (each modprobe is a slow fork/exec under TCG, and they hold up sysinit.target): no GPU, EFI, pstore, configfs or FUSE users on a node. */
const MASKED_UNITS = [
  "modprobe@drm.service",
  "modprobe@efi_pstore.service",
  "modprobe@configfs.service",
  "modprobe@fuse.service",
  "sys-kernel-config.mount",
  "sys-fs-fuse-connections.mount",
  "systemd-pstore.service",
];

/**
 * The initrd only has to find /dev/vda: virtio_pci, virtio_blk and ext4 (MODULES=list) instead
 * of Debian's "most", which makes it a third of the size and saves seconds of unpacking and
 * udev coldplug at every boot under TCG.
 */
const INITRD_MODULES = ["virtio_pci", "virtio_blk", "ext4"];

/**
 * Units that must not run in a privileged system container: they would act on the host (systemd-sysctl
 * writes kernel.* and vm.* keys, udev triggers the host's devices, binfmt is host-global), or have
 * nothing to do (no modules, no ttys, no seed disk: the per-node files are in the node's upper layer).
 */
export const CONTAINER_MASKED_UNITS = [
  "systemd-sysctl.service",
  "systemd-udevd.service",
  "systemd-udevd-control.socket",
  "systemd-udevd-kernel.socket",
  "systemd-udev-trigger.service",
  "systemd-udev-settle.service",
  "systemd-hwdb-update.service",
  "systemd-modules-load.service",
  "systemd-binfmt.service",
  "proc-sys-fs-binfmt_misc.automount",
  "proc-sys-fs-binfmt_misc.mount",
  "systemd-journald-audit.socket",
  "sys-kernel-debug.mount",
  "sys-kernel-tracing.mount",
  "dev-hugepages.mount",
  "dev-mqueue.mount",
  "systemd-random-seed.service",
  "systemd-firstboot.service",
  "k8slab-seed.service",
  "console-getty.service",
  "getty@tty1.service",
];

type Put = (rel: string, content: string | Buffer, mode?: number) => void;

function putter(root: string): Put {
  return (rel, content, mode = 0o644) => {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content, { mode });
    fs.chmodSync(p, mode);
  };
}

const guest = (f: string) => fs.readFileSync(path.join(guestDir, f));

/** What both flavours share: sshd, sysctls, no build-host identity, networkd on the LAN NIC, no timers. */
async function configureCommon(root: string, put: Put) {
  put("etc/ssh/sshd_config.d/k8slab.conf", guest("sshd.conf"));
  put("etc/sysctl.d/90-k8slab.conf", guest("sysctl.conf"));
  // Per node from the seed disk or the node's upper layer; never the build host's values.
  put("etc/hostname", "localhost\n");
  put("etc/resolv.conf", "");
  put("etc/hosts", "127.0.0.1\tlocalhost\n");
  // Empty machine-id: systemd makes a fresh one on each VM's first boot.
  put("etc/machine-id", "", 0o444);
  fs.rmSync(path.join(root, "var/lib/dbus/machine-id"), { force: true });
  for (const f of fs.readdirSync(path.join(root, "etc/ssh"))) {
    if (/^ssh_host_.*_key(\.pub)?$/.test(f)) fs.rmSync(path.join(root, "etc/ssh", f));
  }
  // Debian's networking.service (ifupdown) is absent in minbase; networkd owns the NIC.
  await $`chroot ${root} systemctl enable systemd-networkd.service`.quiet();
  await $`chroot ${root} systemctl disable ${DISABLED_UNITS}`.nothrow().quiet();
  await $`chroot ${root} systemctl mask ${MASKED_UNITS}`.quiet();
}

/** The VM flavour: the seed unit, modules at boot, / by label, a small initrd. */
async function configureVm(root: string, put: Put) {
  put("usr/local/sbin/k8slab-seed", guest("k8slab-seed.sh"), 0o755);
  put("etc/systemd/system/k8slab-seed.service", guest("k8slab-seed.service"));
  put("etc/modules-load.d/k8slab.conf", guest("modules.conf"));
  put("etc/fstab", `LABEL=${ROOT_LABEL}\t/\text4\trw,relatime\t0\t0\n`);
  await $`chroot ${root} systemctl enable k8slab-seed.service`.quiet();
  put("etc/initramfs-tools/conf.d/k8slab.conf", "MODULES=list\n");
  put("etc/initramfs-tools/modules", `${INITRD_MODULES.join("\n")}\n`);
  await $`chroot ${root} update-initramfs -u -k all`.quiet();
}

/** The container flavour (lxc-spike): the LXC entrypoint, units masked, containerd within the host's limits, net sysctls only. */
async function configureContainer(root: string, put: Put) {
  const ct = (f: string) => fs.readFileSync(path.join(containerDir, f));
  put("usr/local/sbin/k8slab-entrypoint", ct("entrypoint"), 0o755);
  put("etc/k8slab/fake-sysctls", ct("fake-sysctls"));
  put("etc/systemd/system/containerd.service.d/k8slab.conf", ct("containerd.conf"));
  put("etc/systemd/journald.conf.d/k8slab.conf", ct("journald.conf"));
  put("etc/systemd/system/k8slab-net-sysctl.service", ct("k8slab-net-sysctl.service"));
  // / is LXC's overlay: nothing to mount or remount from fstab.
  put("etc/fstab", "");
  await $`chroot ${root} systemctl enable k8slab-net-sysctl.service`.quiet();
  await $`chroot ${root} systemctl mask ${CONTAINER_MASKED_UNITS}`.quiet();
}

/** apt's caches and lists: nothing a node needs, and the lists would be stale anyway. */
function dropAptCaches(root: string) {
  fs.rmSync(path.join(root, "var/cache/apt/archives"), { recursive: true, force: true });
  fs.mkdirSync(path.join(root, "var/cache/apt/archives/partial"), { recursive: true });
  fs.rmSync(path.join(root, "var/lib/apt/lists"), { recursive: true, force: true });
  fs.mkdirSync(path.join(root, "var/lib/apt/lists/partial"), { recursive: true });
}

/**
 * debootstrap the flavour's packages into work/rootfs (the .debs come from and go to the shared cache,
 * so a second flavour downloads nothing new), then configure it. Returns dpkg's list of what is installed.
 */
async function bootstrapRootfs(work: string, root: string, flavour: Flavour): Promise<{ packages: string[]; installed: string[] }> {
  const debs = path.join(cacheRoot(), "debs");
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  fs.mkdirSync(debs, { recursive: true });
  const packages = imagePackages(undefined, flavour);
  log(`debootstrap ${SUITE} for the ${flavour} image (minbase + ${packages.length} packages) from ${MIRROR}`);
  const boot = await $`debootstrap --variant=minbase --cache-dir=${debs} --include=${packages.join(",")} ${SUITE} ${root} ${MIRROR}`.nothrow().quiet();
  fs.writeFileSync(path.join(work, "debootstrap.log"), boot.stdout + boot.stderr);
  if (boot.exitCode !== 0) {
    const tail = (boot.stdout + boot.stderr).trim().split("\n").slice(-15).join("\n");
    throw new Error(`debootstrap failed (exit ${boot.exitCode}); see ${path.join(work, "debootstrap.log")}\n${tail}`);
  }
  const put = putter(root);
  await configureCommon(root, put);
  await (flavour === "vm" ? configureVm(root, put) : configureContainer(root, put));
  dropAptCaches(root);
  const installed = (await $`dpkg-query --admindir=${path.join(root, "var/lib/dpkg")} -W -f=${"${Package} ${Version}\n"}`.quiet()).stdout.trim().split("\n");
  return { packages, installed };
}

/** Build the image for key into dir (dir must not be in use; the caller holds the lock). */
export async function buildImage(key: string, dir: string): Promise<ImageManifest> {
  const started = Date.now();
  const work = `${dir}.build`;
  const root = path.join(work, "rootfs");
  try {
    const { packages, installed } = await bootstrapRootfs(work, root, "vm");

    const kernels = fs.readdirSync(path.join(root, "boot")).filter((f) => f.startsWith("vmlinuz-"));
    if (kernels.length !== 1) throw new Error(`expected one kernel in the rootfs /boot, found: ${kernels.join(", ") || "none"}`);
    const kernelVersion = kernels[0].slice("vmlinuz-".length);
    const image = imageOf(work, key, kernelVersion);
    fs.copyFileSync(path.join(root, "boot", `vmlinuz-${kernelVersion}`), image.kernel);
    fs.copyFileSync(path.join(root, "boot", `initrd.img-${kernelVersion}`), image.initrd);

    log(`mkfs.ext4 -d rootfs (${ROOT_SIZE_GIB} GiB, sparse) and convert to qcow2`);
    const raw = path.join(work, "rootfs.raw");
    await $`mkfs.ext4 -q -F -L ${ROOT_LABEL} -d ${root} ${raw} ${ROOT_SIZE_GIB}G`.quiet();
    await $`qemu-img convert -f raw -O qcow2 ${raw} ${image.rootfs}`.quiet();
    fs.rmSync(raw);
    await removeTree(root);
    fs.chmodSync(image.rootfs, 0o444);

    const manifest: ImageManifest = {
      ...imageOf(dir, key, kernelVersion),
      suite: SUITE,
      mirror: MIRROR,
      packages,
      installed,
      rootfsSha256: await sha256File(image.rootfs),
      builtAt: new Date().toISOString(),
      buildSeconds: Math.round((Date.now() - started) / 100) / 10,
    };
    fs.writeFileSync(path.join(work, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(work, dir);
    log(`built ${key} in ${manifest.buildSeconds} s`);
    return manifest;
  } catch (e) {
    // Keep nothing half-built except the debootstrap log for diagnosis.
    await removeTree(root);
    throw e;
  }
}

export interface ContainerRootfsManifest {
  key: string;
  dir: string;
  /** The root directory every container node of this key overlays (never written to). */
  rootfs: string;
  suite: string;
  mirror: string;
  packages: string[];
  installed: string[];
  builtAt: string;
  buildSeconds: number;
}

/** Build the container flavour for key into dir: the configured rootfs stays a directory (the caller holds the lock). */
export async function buildContainerRootfs(key: string, dir: string): Promise<ContainerRootfsManifest> {
  const started = Date.now();
  const work = `${dir}.build`;
  const root = path.join(work, "rootfs");
  try {
    const { packages, installed } = await bootstrapRootfs(work, root, "container");
    const manifest: ContainerRootfsManifest = {
      key,
      dir,
      rootfs: path.join(dir, "rootfs"),
      suite: SUITE,
      mirror: MIRROR,
      packages,
      installed,
      builtAt: new Date().toISOString(),
      buildSeconds: Math.round((Date.now() - started) / 100) / 10,
    };
    fs.writeFileSync(path.join(work, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    await removeTree(dir);
    fs.renameSync(work, dir);
    log(`built ${key} in ${manifest.buildSeconds} s`);
    return manifest;
  } catch (e) {
    await removeTree(root);
    throw e;
  }
}

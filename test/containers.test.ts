// Unit tests of the container driver's pure parts: names, the rootfs flavour's inputs and key, the mount
// plan, the LXC config and net hook, the per-node files, the inotify check. No root, no LXC.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, it } from "node:test";
import { CONTAINER_NAME_MAX, containerOf, IFNAME_MAX, LAN_BRIDGE, vethOf } from "../core/names.ts";
import { ctPaths, labPaths } from "../core/paths.ts";
import { cgroupLayout, checkCgroups, lxcCgroupDirs, lxcPivotDirs, memoryCharge } from "../scripts/machines/cgroups.ts";
import { containerRootfsKey, imageInputs, imageKey, imagePackages } from "../scripts/machines/image.ts";
import { VM_ONLY_PACKAGES } from "../scripts/machines/image-build.ts";
import { lxcLockOf } from "../scripts/machines/lxc.ts";
import { CT_INIT, ctMountPlan, ctNodeFiles, ctRunInputs, lxcConfig, netUpHook } from "../scripts/machines/lxc-config.ts";
import { checkInotify, DRIVER_TOOLS, INOTIFY_PER_NODE } from "../scripts/machines/preflight.ts";
import { macFor, parseLabMachines, parseMachineSpec } from "../scripts/machines/spec.ts";

const spec = parseMachineSpec({
  lab: "e2e-ct",
  name: "node1",
  address: "192.168.0.21",
  prefixLength: 24,
  gateway: "192.168.0.1",
  cpus: 2,
  memoryMiB: 1024,
  sshPort: 2301,
  extraForwards: [{ host: 16543, guest: 6443 }],
  hosts: [
    { name: "node1", address: "192.168.0.21" },
    { name: "node2", address: "192.168.0.22" },
  ],
});
const paths = ctPaths(spec.lab, spec.name);
const LOWER = "/cache/images/ct-trixie-0123456789abcdef/rootfs";
const plan = ctMountPlan(paths, LOWER);
const config = lxcConfig(spec, plan, paths, "v1");
const lines = config.split("\n");
const keys = { authorizedKey: "ssh-ed25519 AAAA lab", hostKey: "PRIVATE", hostKeyPub: "ssh-ed25519 BBBB host" };

describe("container names and paths", () => {
  it("names the container k8slab-<lab>.<node>, unique on the host, and hashes past the limit", () => {
    assert.equal(containerOf("e2e-ct", "node1"), "k8slab-e2e-ct.node1");
    const long = containerOf("a".repeat(57), "n".repeat(63));
    assert.ok(long.length <= CONTAINER_NAME_MAX, long);
    assert.match(long, /^k8slab-[0-9a-f]{16}$/);
    assert.notEqual(containerOf("lab-a", "x"), containerOf("lab", "a-x"), "two labs' nodes never share a name");
  });

  it("gives the veth an interface name of at most 15 bytes", () => {
    assert.equal(vethOf("node1"), "ct-node1");
    assert.ok(vethOf("a-very-long-node-name").length <= IFNAME_MAX);
  });

  it("keeps every file of a node under the lab's state and run folders, LXC's lxcpath absolute", () => {
    const l = labPaths("e2e-ct");
    for (const f of [paths.dir, paths.upper, paths.work, paths.containerd, paths.config, paths.netHook, paths.console]) assert.ok(f.startsWith(`${l.dir}/`), f);
    assert.ok(paths.pid.startsWith(`${l.run}/`));
    assert.ok(l.lxc.startsWith("/"));
    assert.equal(paths.config, `${l.lxc}/k8slab-e2e-ct.node1/config`);
    assert.equal(lxcLockOf(l.lxc, "k8slab-e2e-ct.node1"), `/run/lxc/lock${l.lxc}/.k8slab-e2e-ct.node1`);
  });
});

describe("the container rootfs flavour", () => {
  it("installs the VM's package list without the kernel and initramfs", () => {
    const vm = imagePackages(undefined, "vm");
    const ct = imagePackages(undefined, "container");
    assert.deepEqual(
      vm.filter((p) => !ct.includes(p)),
      VM_ONLY_PACKAGES,
    );
    for (const p of ["openssh-server", "containerd", "runc", "iptables", "tcpdump", "nginx", "udev", "systemd-sysv"]) assert.ok(ct.includes(p), p);
  });

  it("hashes its own inputs (the container files) into a ct- key apart from the VM image's", () => {
    const inputs = imageInputs("container");
    for (const f of [
      "container/entrypoint",
      "container/containerd.conf",
      "container/fake-sysctls",
      "container/k8slab-net-sysctl.service",
      "guest/packages.txt",
    ])
      assert.ok(f in inputs, f);
    assert.equal(inputs.flavour, "container");
    assert.equal("container/entrypoint" in imageInputs("vm"), false, "the VM image does not rebuild when a container file changes");
    assert.match(containerRootfsKey(), /^ct-trixie-[0-9a-f]{16}$/);
    assert.match(imageKey(), /^trixie-[0-9a-f]{16}$/);
    assert.notEqual(imageKey({ ...inputs, "container/entrypoint": "changed" }), containerRootfsKey());
  });
});

describe("the mount plan", () => {
  it("overlays the cached rootfs (lower, never written) with the node's own upper layer", () => {
    assert.equal(plan.rootfs, `overlay:${LOWER}:${paths.upper}`);
    assert.equal(plan.lower, LOWER);
    assert.ok(plan.upper.startsWith(paths.dir) && plan.work.startsWith(paths.dir));
  });

  it("binds /var/lib/containerd from a plain folder (no overlay under containerd's overlayfs snapshots) and the host's /dev/kmsg", () => {
    assert.deepEqual(plan.binds, [
      { source: paths.containerd, target: "var/lib/containerd", create: "dir" },
      { source: "/dev/kmsg", target: "dev/kmsg", create: "file" },
    ]);
    assert.ok(lines.includes(`lxc.mount.entry = ${paths.containerd} var/lib/containerd none bind,create=dir 0 0`));
    assert.ok(lines.includes("lxc.mount.entry = /dev/kmsg dev/kmsg none bind,create=file 0 0"));
  });
});

describe("the LXC config", () => {
  it("includes no common.conf and keeps /proc/sys and /sys read-only apart from net", () => {
    assert.equal(
      lines.some((l) => /^\s*lxc\.include/.test(l)),
      false,
    );
    assert.doesNotMatch(config.replace(/^#.*$/gm, ""), /common\.conf/);
    assert.ok(lines.includes("lxc.mount.auto = proc:mixed sys:mixed cgroup:rw:force"));
    assert.equal(
      lines.some((l) => /proc:rw|sys:rw/.test(l)),
      false,
    );
  });

  it("runs the entrypoint as init and stops with systemd's SIGRTMIN+3", () => {
    assert.ok(lines.includes(`lxc.init.cmd = ${CT_INIT}`));
    assert.ok(lines.includes("lxc.signal.halt = SIGRTMIN+3"));
    assert.deepEqual(ctRunInputs().init, CT_INIT);
  });

  it("puts eth0 on the lab bridge through the script.up hook, never lxc.net.0.link, with the MAC networkd matches", () => {
    assert.equal(
      lines.some((l) => l.startsWith("lxc.net.0.link")),
      false,
    );
    assert.ok(lines.includes(`lxc.net.0.script.up = ${paths.netHook}`));
    assert.ok(lines.includes("lxc.net.0.name = eth0"));
    assert.ok(lines.includes(`lxc.net.0.hwaddr = ${macFor("e2e-ct", "node1")}`));
    assert.ok(lines.includes("lxc.net.0.veth.pair = ct-node1"));
    // The address comes from the same systemd-networkd file a VM gets, not from LXC.
    assert.equal(
      lines.some((l) => l.startsWith("lxc.net.0.ipv4")),
      false,
    );
  });

  it("limits memory and CPU from memoryMiB and cpus, in the keys of the host's cgroups", () => {
    // v1 (and hybrid, whose controllers are v1): lxc.cgroup.*
    assert.ok(lines.includes(`lxc.cgroup.memory.limit_in_bytes = ${1024 * 1024 * 1024}`));
    assert.ok(lines.includes("lxc.cgroup.cpu.cfs_quota_us = 200000"));
    assert.ok(lines.includes("lxc.cgroup.cpu.cfs_period_us = 100000"));
    assert.ok(lines.includes("lxc.cgroup.devices.allow = a"));
    assert.equal(lxcConfig(spec, plan, paths, "hybrid"), config.replace("cgroup v1.", "cgroup hybrid."));
    // v2: lxc.cgroup2.* only (LXC refuses a v1 key on a unified host)
    const v2 = lxcConfig(spec, plan, paths, "v2").split("\n");
    assert.ok(v2.includes(`lxc.cgroup2.memory.max = ${1024 * 1024 * 1024}`));
    assert.ok(v2.includes("lxc.cgroup2.cpu.max = 200000 100000"));
    assert.ok(v2.includes("lxc.cgroup2.devices.allow = a"));
    assert.deepEqual(
      v2.filter((l) => l.startsWith("lxc.cgroup.")),
      [],
    );
  });

  it("names the node and logs under the lab's logs folder", () => {
    assert.ok(lines.includes("lxc.uts.name = node1"));
    assert.ok(lines.includes(`lxc.console.logfile = ${paths.console}`));
    assert.ok(lines.includes(`lxc.rootfs.path = ${plan.rootfs}`));
  });
});

describe("the net hook and the per-node files", () => {
  it("enslaves the host end ($5, else the known veth name) to the lab bridge", () => {
    const hook = netUpHook(spec);
    assert.match(hook, /^#!\/bin\/sh\n/);
    assert.match(hook, /peer=\$\{5:-ct-node1\}/);
    assert.match(hook, new RegExp(`ip link set dev "\\$peer" master ${LAN_BRIDGE}\\n`));
  });

  it("are a VM's seed files plus a stable machine-id", () => {
    const files = ctNodeFiles(spec, keys);
    const byPath = new Map(files.map((f) => [f.path, f]));
    for (const p of [
      "etc/hostname",
      "etc/hosts",
      "etc/resolv.conf",
      "etc/systemd/network/10-k8slab-lan.network",
      "etc/ssh/ssh_host_ed25519_key",
      "root/.ssh/authorized_keys",
    ])
      assert.ok(byPath.has(p), p);
    assert.equal(byPath.get("etc/hostname")?.content, "node1\n");
    assert.match(byPath.get("etc/systemd/network/10-k8slab-lan.network")?.content ?? "", /Address=192\.168\.0\.21\/24/);
    assert.equal(byPath.get("etc/ssh/ssh_host_ed25519_key")?.mode, 0o600);
    assert.match(byPath.get("etc/machine-id")?.content ?? "", /^[0-9a-f]{32}\n$/);
    assert.deepEqual(ctNodeFiles(spec, keys), files, "the same node gets the same machine-id every start");
  });
});

describe("the host's cgroups, in each layout", () => {
  let root: string;
  const container = "k8slab-e2e-ct.node1";
  const write = (rel: string, text = "") => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), text);
  };
  /** A host as LXC leaves it with the node running: v1 hierarchies (a symlinked pair too), a unified root, or both. */
  const host = (layout: "v1" | "v2" | "hybrid") => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), `k8slab-cgroup-${layout}-`));
    if (layout === "v2") {
      write("cgroup.controllers", "cpuset cpu io memory pids\n");
      write(`lxc.payload.${container}/memory.current`, `${300 * 2 ** 20}\n`);
      write(`lxc.payload.${container}/memory.max`, `${1024 * 2 ** 20}\n`);
      write(`lxc.monitor.${container}/cgroup.procs`);
      write("lxc.pivot/cgroup.procs");
      return;
    }
    for (const h of ["memory", "cpu,cpuacct", "systemd"]) {
      write(`${h}/lxc.payload.${container}/cgroup.procs`);
      write(`${h}/lxc.monitor.${container}/cgroup.procs`);
      write(`${h}/lxc.pivot/cgroup.procs`);
    }
    fs.symlinkSync("cpu,cpuacct", path.join(root, "cpu"));
    write(`memory/lxc.payload.${container}/memory.usage_in_bytes`, `${300 * 2 ** 20}\n`);
    write(`memory/lxc.payload.${container}/memory.limit_in_bytes`, "9223372036854771712\n");
    if (layout === "hybrid") {
      write("unified/cgroup.controllers", "\n");
      write(`unified/lxc.payload.${container}/cgroup.procs`);
    }
  };
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it("tells v1, v2 and hybrid apart, and says when there is nothing to limit a node with", () => {
    for (const layout of ["v1", "v2", "hybrid"] as const) {
      host(layout);
      assert.equal(cgroupLayout(root), layout);
      assert.deepEqual(checkCgroups(root), []);
      fs.rmSync(root, { recursive: true });
    }
    host("v2");
    fs.writeFileSync(path.join(root, "cgroup.controllers"), "pids io\n");
    assert.deepEqual(
      checkCgroups(root).map((p) => p.split(";")[0]),
      [
        "cgroups: the host's v2 cgroups have no memory controller, which container nodes are limited with",
        "cgroups: the host's v2 cgroups have no cpu controller, which container nodes are limited with",
      ],
    );
    fs.rmSync(root, { recursive: true });
    root = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-cgroup-none-"));
    assert.equal(cgroupLayout(root), undefined);
    assert.match(checkCgroups(root)[0], /^cgroups: no cgroup v2 tree and no v1 memory hierarchy/);
  });

  it("finds LXC's folders for the node in every tree, its pivot folders, and none of a node that never ran", () => {
    host("v1");
    const rel = (dirs: string[]) => dirs.map((d) => path.relative(root, d)).sort();
    assert.deepEqual(rel(lxcCgroupDirs(container, root)), [
      `cpu,cpuacct/lxc.monitor.${container}`,
      `cpu,cpuacct/lxc.payload.${container}`,
      `memory/lxc.monitor.${container}`,
      `memory/lxc.payload.${container}`,
      `systemd/lxc.monitor.${container}`,
      `systemd/lxc.payload.${container}`,
    ]);
    assert.deepEqual(rel(lxcPivotDirs(root)), ["cpu,cpuacct/lxc.pivot", "memory/lxc.pivot", "systemd/lxc.pivot"]);
    assert.deepEqual(lxcCgroupDirs("k8slab-no-such-lab.node1", root), []);
    fs.rmSync(root, { recursive: true });
    host("v2");
    assert.deepEqual(rel(lxcCgroupDirs(container, root)), [`lxc.monitor.${container}`, `lxc.payload.${container}`]);
    assert.deepEqual(rel(lxcPivotDirs(root)), ["lxc.pivot"]);
    // Where LXC stays in its own cgroup (lxc.cgroup.relative), deeper; another node's insides are not searched.
    write(`system.slice/lab.service/lxc.payload.${container}/cgroup.procs`);
    write(`lxc.payload.k8slab-other.node1/kubepods.slice/lxc.payload.${container}/cgroup.procs`);
    assert.deepEqual(rel(lxcCgroupDirs(container, root)), [
      `lxc.monitor.${container}`,
      `lxc.payload.${container}`,
      `system.slice/lab.service/lxc.payload.${container}`,
    ]);
    fs.rmSync(root, { recursive: true });
    host("hybrid");
    assert.ok(rel(lxcCgroupDirs(container, root)).includes(`unified/lxc.payload.${container}`));
  });

  it("reads what the host charges the node, and its limit (none: undefined)", () => {
    host("v2");
    assert.deepEqual(memoryCharge(container, root), { memoryUsageMiB: 300, memoryLimitMiB: 1024 });
    fs.writeFileSync(path.join(root, `lxc.payload.${container}/memory.max`), "max\n");
    assert.deepEqual(memoryCharge(container, root), { memoryUsageMiB: 300 });
    fs.rmSync(root, { recursive: true });
    for (const layout of ["v1", "hybrid"] as const) {
      host(layout);
      assert.deepEqual(memoryCharge(container, root), { memoryUsageMiB: 300 });
      fs.rmSync(root, { recursive: true });
    }
    host("v1");
    assert.deepEqual(memoryCharge("k8slab-no-such-lab.node1", root), {});
  });
});

describe("container preflight", () => {
  it("asks for lxc's tools and not QEMU's", () => {
    assert.ok(DRIVER_TOOLS.container.includes("lxc-start"));
    assert.equal((DRIVER_TOOLS.container as readonly string[]).includes("qemu-system-x86_64"), false);
  });

  it("says when the host's inotify instances would run out, and which sysctl raises them", () => {
    assert.deepEqual(checkInotify(2, 128, 40), []);
    const [p] = checkInotify(2, 128, 128 - INOTIFY_PER_NODE);
    assert.match(p, /^inotify: 2 container node\(s\) need about 30 .*fs\.inotify\.max_user_instances=128/);
  });

  it("reads the driver from the lab's machine specs (qemu unless said)", () => {
    const net = { lab: "e2e-ct", netns: "k8slab-e2e-ct", bridge: LAN_BRIDGE, gatewayCidr: "192.168.0.1/24" };
    assert.equal(parseLabMachines({ net, machines: [spec] }).driver, "qemu");
    assert.equal(parseLabMachines({ net, driver: "container", machines: [spec] }).driver, "container");
  });
});

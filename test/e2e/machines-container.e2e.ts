// End-to-end test of the container driver (root, real LXC containers): the container rootfs, the lab LAN,
// two container nodes that reach each other over it, ct-up's no-op, then `down` and proof that nothing is
// left (no netns, container, mount, veth, LXC cgroup or lock). The same checks as machines.e2e.ts for VMs.
// Run: npx tsx --test test/e2e/machines-container.e2e.ts
import "../../scripts/quiet-bash.ts";
import assert from "node:assert/strict";
import fs from "node:fs";
import { after, before, describe, it } from "node:test";
import { $ } from "zx";
import { containerOf, LAN_BRIDGE, netnsOf, vethOf } from "../../core/names.ts";
import { labPaths } from "../../core/paths.ts";
import { ensureContainerRootfs } from "../../scripts/machines/image.ts";
import { labDown, labNetUp, labStatus } from "../../scripts/machines/lab.ts";
import { netnsExists } from "../../scripts/machines/labnet.ts";
import { type CtUpResult, ctStatus, ctUp, lxcLockOf, monitorPidOf } from "../../scripts/machines/lxc.ts";
import { preflightLab } from "../../scripts/machines/preflight.ts";
import { listening } from "../../scripts/machines/qemu.ts";
import { type MachineSpecInput, parseLabMachines } from "../../scripts/machines/spec.ts";
import { consoleTail, sshRun } from "../../scripts/machines/ssh.ts";
import { cgroupDirsOf, cgroupMounts, findContainerCgroups, memoryProblems, notWithin, readNodeMemory } from "./checks.ts";
import { MACHINES_CT_PORTS } from "./own-lab.ts";

const LAB = process.env.K8SLAB_E2E_CT_LAB ?? "e2e-ct";
// In the e2e range (own-lab.ts): 16543 is also labs/room.yaml's first learner's API server port.
const SSH_PORT_BASE = MACHINES_CT_PORTS.sshPortBase;
const API_PORT = MACHINES_CT_PORTS.apiServerPort;
const isRoot = process.getuid?.() === 0;

const figures: Record<string, string | number> = {};
const t0 = Date.now();
const secs = (from: number) => Math.round((Date.now() - from) / 100) / 10;

/** Host-global sysctls a privileged node could change by accident (systemd-sysctl, kubelet): they must not move. */
const HOST_SYSCTLS = ["kernel/pid_max", "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "net/ipv4/ip_forward"];
const readSysctls = () => Object.fromEntries(HOST_SYSCTLS.map((k) => [k, fs.readFileSync(`/proc/sys/${k}`, "utf8").trim()]));

/** Mounts whose mount point or source lies under dir (this process's mount namespace is the host's). */
const mountsUnder = (dir: string) =>
  fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => l.split(" ").some((f) => f === dir || f.startsWith(`${dir}/`)));

describe("container driver end to end", { skip: isRoot ? false : "needs root (namespaces, LXC)" }, () => {
  const netSpec = { lab: LAB, netns: netnsOf(LAB), bridge: LAN_BRIDGE, gatewayCidr: "192.168.0.1/24" };
  let machines: MachineSpecInput[] = [];
  const up: Record<string, CtUpResult> = {};
  let downDone = false;
  let hostSysctls: Record<string, string> = {};

  before(async () => {
    // A previous, interrupted run of this test must not make this one fail.
    await labDown(LAB);
    hostSysctls = readSysctls();
    const hosts = [
      { name: "node1", address: "192.168.0.21" },
      { name: "node2", address: "192.168.0.22" },
    ];
    const base = { lab: LAB, prefixLength: 24, gateway: "192.168.0.1", cpus: 1, memoryMiB: 1024, hosts };
    machines = [
      { ...base, name: "node1", address: "192.168.0.21", sshPort: SSH_PORT_BASE, extraForwards: [{ host: API_PORT, guest: 6443 }] },
      { ...base, name: "node2", address: "192.168.0.22", sshPort: SSH_PORT_BASE + 1 },
    ];
  });

  after(async () => {
    if (!downDone && process.env.K8SLAB_E2E_KEEP !== "1") {
      for (const m of ["node1", "node2"]) {
        const log = `${labPaths(LAB).logs}/${m}.console.log`;
        if (fs.existsSync(log)) process.stderr.write(`--- ${m} console (tail) ---\n${consoleTail(log, 25)}\n`);
      }
      await labDown(LAB);
    }
    figures.totalSeconds = secs(t0);
    process.stderr.write(`container e2e figures: ${JSON.stringify(figures)}\n`);
  });

  it("passes preflight", async () => {
    assert.deepEqual(await preflightLab(parseLabMachines({ net: netSpec, driver: "container", machines })), []);
  });

  it("builds or reuses the container rootfs, and reuses it the second time", { timeout: 1_800_000 }, async () => {
    let from = Date.now();
    const first = await ensureContainerRootfs();
    figures[first.reused ? "rootfsWarmSeconds" : "rootfsColdSeconds"] = first.reused ? secs(from) : first.buildSeconds;
    from = Date.now();
    const second = await ensureContainerRootfs();
    assert.equal(second.reused, true);
    assert.equal(second.key, first.key);
    assert.ok(fs.statSync(second.rootfs).isDirectory());
    assert.equal(fs.existsSync(`${second.rootfs}/boot/vmlinuz`), false, "no kernel in a container rootfs");
  });

  it("brings the lab LAN up in its own namespace", async () => {
    const r = await labNetUp(netSpec);
    assert.ok(netnsExists(r.netns));
    assert.equal((await $`ip -n ${r.netns} route show default`.quiet()).stdout.trim(), "");
  });

  it("starts two container nodes that answer ssh on host loopback", { timeout: 600_000 }, async () => {
    const from = Date.now();
    const results = await Promise.all(machines.map((m) => ctUp(m, { timeoutSec: 300 })));
    figures.bothSshSeconds = secs(from);
    for (const r of results) {
      up[r.name] = r;
      figures[`${r.name}SshSeconds`] = r.sshSeconds ?? -1;
      assert.equal(r.changed, true);
      assert.equal(r.container, containerOf(LAB, r.name));
    }
  });

  it("gives each node its hostname, static address, net sysctls, a clean boot and its own disk layout", { timeout: 120_000 }, async () => {
    for (const m of machines) {
      const out = await sshRun(
        up[m.name].ssh,
        [
          "hostname",
          "ip -4 -o addr show dev eth0",
          "sysctl -n net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables",
          "systemctl is-system-running --wait",
          "systemctl --failed --no-legend --plain | sed 's/^/failed: /'",
          "findmnt -no FSTYPE /",
          "findmnt -no FSTYPE /var/lib/containerd",
          "cat /proc/sys/vm/overcommit_memory",
          "systemctl is-active containerd ssh systemd-networkd",
        ].join("; "),
      );
      const [hostname] = out.split("\n");
      assert.equal(hostname, m.name);
      assert.match(out, new RegExp(`inet ${m.address.replace(/\./g, "\\.")}/24`));
      assert.match(out, /^1\n1$/m, "ip_forward and bridge-nf-call-iptables in the node's namespace");
      assert.match(out, /^running$/m);
      assert.doesNotMatch(out, /^failed: /m);
      assert.match(out, /^overlay\next4$/m, "/ is the overlay; containerd's store is plain ext4");
      // kubelet's tunable is shown as it wants it; the host keeps its own (checked after down).
      assert.match(out, /^1\nactive\nactive\nactive$/m);
    }
  });

  it("lets node1 and node2 reach each other over the LAN (ping, and ssh with node1 as the TCP source)", { timeout: 120_000 }, async () => {
    const [a, b] = machines;
    assert.match(await sshRun(up[a.name].ssh, `ping -c 3 -W 2 ${b.address}`), / 0% packet loss/);
    assert.match(await sshRun(up[b.name].ssh, `ping -c 3 -W 2 ${a.address}`), / 0% packet loss/);
    const lanEp = { ...up[b.name].ssh, host: b.address, port: 22 };
    const conn = (await sshRun(lanEp, "echo $SSH_CONNECTION; hostname", { jump: up[a.name].ssh })).trim().split("\n");
    assert.equal(conn[0].split(" ")[0], a.address, `node2 saw the ssh client as ${conn[0]}`);
    assert.equal(conn[1], b.name);
  });

  it("is reachable from the outside client (the namespace at 192.168.0.1)", async () => {
    for (const m of machines) {
      await $`nsenter --net=/run/netns/${netSpec.netns} timeout 10 bash -c ${`exec 3<>/dev/tcp/${m.address}/22; head -c 4 <&3`}`.quiet();
    }
  });

  it("forwards the extra port (node1 API server port) on host loopback", () => {
    assert.ok(listening(API_PORT));
    assert.ok(listening(SSH_PORT_BASE) && listening(SSH_PORT_BASE + 1));
  });

  it("caps each node's memory from memoryMiB in the host's memory cgroup", () => {
    for (const m of machines) {
      const s = ctStatus(LAB, m.name);
      assert.equal(s.running, true);
      assert.equal(s.memoryLimitMiB, m.memoryMiB);
      figures[`${m.name}MemoryMiB`] = s.memoryUsageMiB ?? -1;
      // A plausible figure: the node's processes take some memory, less than its limit.
      assert.deepEqual(memoryProblems(m.name, readNodeMemory(findContainerCgroups(s.container)), m.memoryMiB), []);
    }
  });

  it("treats ct-up with the same spec as a no-op", { timeout: 120_000 }, async () => {
    const from = Date.now();
    const again = await ctUp(machines[0]);
    figures.noopSeconds = secs(from);
    assert.equal(again.changed, false);
    assert.equal(again.pid, up.node1.pid);
    const status = await labStatus(LAB);
    assert.deepEqual(
      status.nodes.map((n) => [n.name, n.running]),
      [
        ["node1", true],
        ["node2", true],
      ],
    );
  });

  it("down removes every container, forward, veth, namespace, mount, LXC cgroup and lock, and leaves the host's sysctls", { timeout: 300_000 }, async () => {
    const l = labPaths(LAB);
    const pids = [...Object.values(up).map((r) => r.pid), ...machines.map((m) => monitorPidOf(LAB, m.name) ?? 0)];
    const fwdPids = fs
      .readdirSync(l.run)
      .filter((f) => f.includes(".fwd-"))
      .map((f) => Number(fs.readFileSync(`${l.run}/${f}`, "utf8")));
    assert.equal(fwdPids.length, 3);
    assert.ok(mountsUnder(l.dir).length === 0, "LXC mounts the overlay in the node's own mount namespace, not the host's");
    // Each node's cgroups, searched for in every cgroup tree (v1 and v2) while it runs: the search must
    // find its init's, or finding none after down would prove nothing.
    const mounts = cgroupMounts(fs.readFileSync("/proc/self/mountinfo", "utf8"));
    const cgroupsUp = new Map<string, string[]>();
    for (const m of machines) {
      const found = findContainerCgroups(containerOf(LAB, m.name));
      const own = cgroupDirsOf(fs.readFileSync(`/proc/${up[m.name].pid}/cgroup`, "utf8"), mounts).filter((d) => !mounts.some((x) => x.mountPoint === d));
      assert.ok(own.length > 0, `${m.name}'s init is in cgroups of its own`);
      assert.deepEqual(notWithin(own, found), [], `${m.name}'s init's cgroups are among those found: ${found.join(", ")}`);
      cgroupsUp.set(m.name, found);
    }
    const from = Date.now();
    await labDown(LAB);
    downDone = true;
    figures.downSeconds = secs(from);
    const alive = (pid: number) => {
      try {
        return !/ Z /.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\)/, ""));
      } catch {
        return false;
      }
    };
    for (const pid of [...pids, ...fwdPids]) assert.equal(alive(pid), false, `pid ${pid} still alive`);
    assert.equal(netnsExists(netSpec.netns), false);
    assert.equal(fs.existsSync(l.dir), false, "lab state (layers, keys, logs, lxcpath) left");
    assert.equal(fs.existsSync(l.run), false, "pidfiles left");
    assert.deepEqual(mountsUnder(l.dir), []);
    for (const m of machines) {
      const ct = containerOf(LAB, m.name);
      assert.deepEqual(findContainerCgroups(ct), [], `LXC cgroups of ${ct} left`);
      assert.deepEqual(
        cgroupsUp.get(m.name)?.filter((d) => fs.existsSync(d)),
        [],
        `a cgroup of ${ct} found while it ran is left`,
      );
      assert.equal(fs.existsSync(lxcLockOf(l.lxc, ct)), false, `LXC lock of ${ct} left`);
      assert.doesNotMatch((await $`ip -o link show`.quiet()).stdout, new RegExp(`${vethOf(m.name)}|${LAN_BRIDGE}`));
    }
    assert.doesNotMatch((await $`lxc-ls -P ${l.lxc}`.nothrow().quiet()).stdout, /\S/);
    for (const p of [SSH_PORT_BASE, SSH_PORT_BASE + 1, API_PORT]) assert.equal(listening(p), false, `port ${p}`);
    assert.deepEqual(readSysctls(), hostSysctls, "the host's kernel.*/vm.* sysctls changed");
  });
});

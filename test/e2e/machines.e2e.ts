// End-to-end test of the machine layer (root, real VMs): image, lab LAN, two VMs that reach each other over it,
// then `down` and proof that nothing is left. Run: npx tsx --test test/e2e/machines.e2e.ts
import "../../scripts/quiet-bash.ts";
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { $ } from "zx";
import { LAN_BRIDGE, netnsOf } from "../../core/names.ts";
import { labPaths } from "../../core/paths.ts";
import { ensureImage } from "../../scripts/machines/image.ts";
import { labDown, labNetUp } from "../../scripts/machines/lab.ts";
import { netnsExists } from "../../scripts/machines/labnet.ts";
import { preflightLab } from "../../scripts/machines/preflight.ts";
import { listening, type VmUpResult, vmStatus, vmUp } from "../../scripts/machines/qemu.ts";
import { type MachineSpecInput, parseLabMachines, type SshEndpoint } from "../../scripts/machines/spec.ts";
import { consoleTail, sshRun } from "../../scripts/machines/ssh.ts";

const LAB = process.env.K8SLAB_E2E_LAB ?? "e2e-machines";
const isRoot = process.getuid?.() === 0;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

const figures: Record<string, string | number> = {};
const t0 = Date.now();
const secs = (from: number) => Math.round((Date.now() - from) / 100) / 10;

describe("machine layer end to end", { skip: isRoot ? false : "needs root (namespaces, taps, VMs)" }, () => {
  const netSpec = { lab: LAB, netns: netnsOf(LAB), bridge: LAN_BRIDGE, gatewayCidr: "192.168.0.1/24" };
  let machines: MachineSpecInput[] = [];
  const up: Record<string, VmUpResult> = {};
  let downDone = false;

  before(async () => {
    // A previous, interrupted run of this test must not make this one fail.
    await labDown(LAB);
    const [p1, p2, api] = [await freePort(), await freePort(), await freePort()];
    const hosts = [
      { name: "node1", address: "192.168.0.21" },
      { name: "node2", address: "192.168.0.22" },
    ];
    const base = { lab: LAB, prefixLength: 24, gateway: "192.168.0.1", cpus: 2, memoryMiB: 2048, hosts };
    machines = [
      { ...base, name: "node1", address: "192.168.0.21", sshPort: p1, extraForwards: [{ host: api, guest: 6443 }] },
      { ...base, name: "node2", address: "192.168.0.22", sshPort: p2 },
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
    process.stderr.write(`machines e2e figures: ${JSON.stringify(figures)}\n`);
  });

  it("passes preflight", async () => {
    assert.deepEqual(await preflightLab(parseLabMachines({ net: netSpec, machines })), []);
  });

  it("builds or reuses the node image, and reuses it the second time", { timeout: 1_800_000 }, async () => {
    let from = Date.now();
    const first = await ensureImage();
    figures[first.reused ? "imageWarmSeconds" : "imageColdSeconds"] = first.reused ? secs(from) : first.buildSeconds;
    from = Date.now();
    const second = await ensureImage();
    assert.equal(second.reused, true);
    assert.equal(second.key, first.key);
    figures.imageWarmSeconds = secs(from);
  });

  it("brings the lab LAN up in its own namespace", async () => {
    const r = await labNetUp(netSpec);
    assert.ok(netnsExists(r.netns));
    const addrs = (await $`ip -n ${r.netns} -4 -o addr show dev ${r.bridge}`.quiet()).stdout;
    assert.match(addrs, /inet 192\.168\.0\.1\/24/);
    // No uplink and no default route: guests have no way out of the lab.
    assert.equal((await $`ip -n ${r.netns} route show default`.quiet()).stdout.trim(), "");
  });

  it("starts two VMs that answer ssh on host loopback", { timeout: 1_200_000 }, async () => {
    const from = Date.now();
    const results = await Promise.all(machines.map((m) => vmUp(m, { timeoutSec: 900 })));
    figures.bothSshSeconds = secs(from);
    for (const r of results) {
      up[r.name] = r;
      figures[`${r.name}SshSeconds`] = r.sshSeconds ?? -1;
      figures.accel = r.accel;
      assert.equal(r.changed, true);
    }
  });

  it("gives each VM its hostname, static address, modules and cgroup v2", { timeout: 300_000 }, async () => {
    for (const m of machines) {
      const out = await sshRun(
        up[m.name].ssh,
        "hostname; ip -4 -o addr show dev eth0; stat -fc %T /sys/fs/cgroup; lsmod; sysctl -n net.bridge.bridge-nf-call-iptables net.ipv4.ip_forward",
      );
      const [hostname] = out.split("\n");
      assert.equal(hostname, m.name);
      assert.match(out, new RegExp(`inet ${m.address.replace(/\./g, "\\.")}/24`));
      assert.match(out, /^cgroup2fs$/m);
      for (const mod of ["vxlan", "br_netfilter", "overlay", "nf_conntrack"]) assert.match(out, new RegExp(`^${mod} `, "m"), mod);
      assert.match(out, /^1\n1$/m);
    }
  });

  /**
   * A ping on a node, over ssh. Once (CI, stop 24), a guest that had just answered ssh closed the session
   * mid-ping ("closed by remote host", ssh exit 255): that transport failure, and only it, is tried again.
   */
  const pingOver = async (ep: SshEndpoint, address: string) => {
    const command = `ping -c 3 -W 2 ${address}`;
    try {
      return await sshRun(ep, command);
    } catch (err) {
      if ((err as { exitCode?: number }).exitCode !== 255) throw err;
      process.stderr.write(`ssh to ${ep.host}:${ep.port} failed (exit 255), trying the ping once more\n`);
      return sshRun(ep, command);
    }
  };

  it("lets node1 and node2 reach each other over the LAN (ping, and ssh with node1 as the TCP source)", { timeout: 300_000 }, async () => {
    const [a, b] = machines;
    assert.match(await pingOver(up[a.name].ssh, b.address), / 0% packet loss/);
    assert.match(await pingOver(up[b.name].ssh, a.address), / 0% packet loss/);
    // ssh to node2's LAN address, with the TCP connection opened by node1 (ProxyCommand ssh -W through node1).
    const lanEp = { ...up[b.name].ssh, host: b.address, port: 22 };
    const conn = (await sshRun(lanEp, "echo $SSH_CONNECTION; hostname", { jump: up[a.name].ssh })).trim().split("\n");
    assert.equal(conn[0].split(" ")[0], a.address, `node2 saw the ssh client as ${conn[0]}`);
    assert.equal(conn[0].split(" ")[2], b.address);
    assert.equal(conn[1], b.name);
    const back = (await sshRun({ ...up[a.name].ssh, host: a.address, port: 22 }, "echo $SSH_CONNECTION", { jump: up[b.name].ssh })).trim();
    assert.equal(back.split(" ")[0], b.address);
  });

  it("is reachable from the outside client (the namespace at 192.168.0.1)", async () => {
    for (const m of machines) {
      await $`nsenter --net=/run/netns/${netSpec.netns} timeout 10 bash -c ${`exec 3<>/dev/tcp/${m.address}/22; head -c 4 <&3`}`.quiet();
    }
  });

  it("forwards the extra port (node1 API server port) on host loopback", () => {
    const api = machines[0].extraForwards![0].host;
    assert.ok(listening(api));
    assert.ok(listening(machines[0].sshPort) && listening(machines[1].sshPort));
  });

  it("treats vm-up with the same spec as a no-op", { timeout: 300_000 }, async () => {
    const again = await vmUp(machines[0]);
    assert.equal(again.changed, false);
    assert.equal(again.pid, up.node1.pid);
    for (const m of machines) figures[`${m.name}RssMiB`] = vmStatus(LAB, m.name).rssMiB ?? -1;
  });

  it("down removes every VM, forward, tap, namespace, overlay, key and socket", { timeout: 300_000 }, async () => {
    const pids = Object.values(up).map((r) => r.pid);
    const fwdPids = fs
      .readdirSync(labPaths(LAB).run)
      .filter((f) => f.includes(".fwd-"))
      .map((f) => Number(fs.readFileSync(`${labPaths(LAB).run}/${f}`, "utf8")));
    assert.equal(fwdPids.length, 3);
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
    assert.equal(fs.existsSync(labPaths(LAB).dir), false, "lab state (overlays, keys, logs) left");
    assert.equal(fs.existsSync(labPaths(LAB).run), false, "pidfiles/sockets left");
    assert.doesNotMatch((await $`ip -o link show`.quiet()).stdout, /tap-node|lan0/);
    for (const m of machines) for (const p of [m.sshPort, ...(m.extraForwards ?? []).map((f) => f.host)]) assert.equal(listening(p), false, `port ${p}`);
  });
});

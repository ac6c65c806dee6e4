// Unit tests of the machine layer's pure parts: spec validation, derived names, renderers, preflight maths.
// No root, no network, no VMs.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LAN_BRIDGE, netnsOf, tapOf } from "../core/names.ts";
import { labPaths, vmPaths } from "../core/paths.ts";
import { imageInputs, imageKey, imagePackages } from "../scripts/machines/image.ts";
import { checkKernel, checkMemory, type KernelProbe, kernelNeeds, memAvailableMiB, overlappingRoutes } from "../scripts/machines/preflight.ts";
import {
  accelArgs,
  forwardArgv,
  hostsFile,
  kernelCmdline,
  knownHostsLine,
  networkdConfig,
  qemuArgv,
  qemuCommand,
  resolvConf,
  runFingerprint,
  seedFiles,
} from "../scripts/machines/render.ts";
import { lanOf, type MachineSpecInput, macFor, parseLabMachines, parseLabNetSpec, parseMachineSpec, SpecError, uuidFor } from "../scripts/machines/spec.ts";
import { sshArgv } from "../scripts/machines/ssh.ts";

const node1: MachineSpecInput = {
  lab: "two-node",
  name: "node1",
  address: "192.168.0.21",
  prefixLength: 24,
  gateway: "192.168.0.1",
  cpus: 2,
  memoryMiB: 2048,
  sshPort: 2221,
  extraForwards: [{ host: 6443, guest: 6443 }],
  hosts: [
    { name: "node1", address: "192.168.0.21" },
    { name: "node2", address: "192.168.0.22" },
  ],
};
const node2: MachineSpecInput = { ...node1, name: "node2", address: "192.168.0.22", sshPort: 2222, extraForwards: [] };
const net = { lab: "two-node", netns: netnsOf("two-node"), bridge: LAN_BRIDGE, gatewayCidr: "192.168.0.1/24" };

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof SpecError) return e.problems;
    throw e;
  }
  return [];
}

describe("spec validation", () => {
  it("accepts the reference nodes and fills defaults", () => {
    const s = parseMachineSpec(node2);
    assert.deepEqual(s.extraForwards, []);
    assert.equal(s.netns, undefined);
  });

  it("rejects unknown keys, bad addresses and names, each naming the field", () => {
    const p = problemsOf(() => parseMachineSpec({ ...node1, address: "192.168.0.300", name: "Node_1", colour: "red" }));
    assert.ok(
      p.some((l) => l.startsWith("address:")),
      p.join("\n"),
    );
    assert.ok(
      p.some((l) => l.startsWith("name:")),
      p.join("\n"),
    );
    assert.ok(
      p.some((l) => l.includes("colour")),
      p.join("\n"),
    );
  });

  it("rejects a gateway off the LAN and a port used twice", () => {
    assert.deepEqual(
      problemsOf(() => parseMachineSpec({ ...node1, gateway: "10.0.0.1" })),
      ["gateway: 10.0.0.1 is not on 192.168.0.0/24"],
    );
    assert.deepEqual(
      problemsOf(() => parseMachineSpec({ ...node1, extraForwards: [{ host: 2221, guest: 6443 }] })),
      ["extraForwards: host port 2221 is used twice"],
    );
  });

  it("accepts long node names (RFC 1123 labels) and rejects others", () => {
    assert.equal(parseMachineSpec({ ...node1, name: "a-very-long-node-name" }).name, "a-very-long-node-name");
    assert.equal(problemsOf(() => parseMachineSpec({ ...node1, name: "x".repeat(64) }))[0]?.split(":")[0], "name");
  });

  it("finds duplicate names, addresses and ports across a lab, and a machine off the lab net", () => {
    const p = problemsOf(() =>
      parseLabMachines({
        net,
        machines: [node1, { ...node2, address: "192.168.0.21", sshPort: 6443 }, { ...node2, name: "node3", address: "192.168.0.23", gateway: "192.168.0.254" }],
      }),
    );
    assert.ok(p.includes("machines[1].address: 192.168.0.21 is also used by machines[0]"), p.join("\n"));
    assert.ok(p.includes("machines[1].sshPort/extraForwards: 6443 is also used by machines[0]"), p.join("\n"));
    assert.ok(
      p.some((l) => l.startsWith("machines[2].gateway:")),
      p.join("\n"),
    );
  });

  it("accepts the reference lab", () => {
    assert.equal(parseLabMachines({ net, machines: [node1, node2] }).machines.length, 2);
    assert.deepEqual(parseLabNetSpec(net), { lab: "two-node", netns: "k8slab-two-node", bridge: "lan0", gatewayCidr: "192.168.0.1/24" });
    assert.ok(problemsOf(() => parseLabNetSpec({ ...net, gatewayCidr: "192.168.0.1" })).some((l) => l.startsWith("gatewayCidr:")));
  });
});

describe("derived names", () => {
  it("gives stable, distinct MACs and UUIDs per lab and node", () => {
    assert.equal(macFor("two-node", "node1"), macFor("two-node", "node1"));
    assert.notEqual(macFor("two-node", "node1"), macFor("two-node", "node2"));
    assert.notEqual(macFor("two-node", "node1"), macFor("other", "node1"));
    assert.match(macFor("two-node", "node1"), /^52:54:00(:[0-9a-f]{2}){3}$/);
    assert.match(uuidFor("two-node", "node1"), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it("keeps tap names within 15 bytes", () => {
    assert.equal(tapOf("node1"), "tap-node1");
    assert.equal(tapOf("abcdefghijk"), "tap-abcdefghijk");
    assert.ok(tapOf("a-very-long-node-name").length <= 15);
    assert.notEqual(tapOf("a-very-long-node-name"), tapOf("a-very-long-node-name2"));
  });

  it("computes the LAN of an address", () => {
    assert.equal(lanOf({ address: "192.168.0.21", prefixLength: 24 }), "192.168.0.0/24");
    assert.equal(lanOf({ address: "10.1.2.3", prefixLength: 16 }), "10.1.0.0/16");
  });

  it("puts state under K8SLAB_STATE and pidfiles under K8SLAB_RUN", () => {
    const saved = { s: process.env.K8SLAB_STATE, r: process.env.K8SLAB_RUN };
    process.env.K8SLAB_STATE = "/st";
    process.env.K8SLAB_RUN = "/rn";
    try {
      assert.equal(labPaths("lab").key, "/st/labs/lab/id_ed25519");
      assert.equal(vmPaths("lab", "node1").overlay, "/st/labs/lab/vms/node1/disk.qcow2");
      assert.equal(vmPaths("lab", "node1").pid, "/rn/lab/node1.qemu.pid");
      assert.equal(vmPaths("lab", "node1").fwdPid(2221), "/rn/lab/node1.fwd-2221.pid");
    } finally {
      for (const [k, v] of [
        ["K8SLAB_STATE", saved.s],
        ["K8SLAB_RUN", saved.r],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});

describe("qemu argv", () => {
  const spec = parseMachineSpec(node1);
  const paths = vmPaths("two-node", "node1");
  const image = { kernel: "/img/vmlinuz", initrd: "/img/initrd.img", rootfs: "/img/rootfs.qcow2" };
  const argv = qemuArgv(spec, image, paths, "tcg");
  const value = (flag: string, nth = 0) => argv.filter((_, i) => argv[i - 1] === flag)[nth];

  it("sizes the VM from the spec and boots the image kernel directly", () => {
    assert.equal(value("-smp"), "2");
    assert.equal(value("-m"), "2048M");
    assert.equal(value("-kernel"), "/img/vmlinuz");
    assert.equal(value("-initrd"), "/img/initrd.img");
    assert.equal(value("-append"), kernelCmdline());
    assert.equal(value("-uuid"), uuidFor("two-node", "node1"));
  });

  it("uses the overlay, a read-only seed disk, the tap and a console log", () => {
    assert.equal(value("-drive", 0), `file=${paths.overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap`);
    assert.equal(value("-drive", 1), `file=${paths.seed},if=virtio,format=raw,readonly=on`);
    assert.equal(value("-netdev"), "tap,id=lan,ifname=tap-node1,script=no,downscript=no");
    assert.equal(value("-device", 0), `virtio-net-pci,netdev=lan,mac=${macFor("two-node", "node1")}`);
    assert.equal(value("-chardev"), `file,id=console,path=${paths.console},append=on`);
    assert.equal(value("-pidfile"), paths.pid);
    assert.ok(argv.includes("-daemonize"));
    assert.ok(!argv.some((a) => a.startsWith("user") || a.includes("hostfwd")), "no user-mode NIC: guests stay single-homed");
  });

  it("picks TCG multi-threaded or KVM", () => {
    assert.deepEqual(accelArgs("tcg"), ["-accel", "tcg,thread=multi"]);
    assert.deepEqual(accelArgs("kvm"), ["-accel", "kvm", "-cpu", "host"]);
    assert.equal(value("-accel"), "tcg,thread=multi");
  });

  it("runs QEMU inside the lab namespace with nsenter (not ip netns exec, which remounts /sys)", () => {
    const cmd = qemuCommand(spec, image, paths, "tcg");
    assert.deepEqual(cmd.slice(0, 3), ["nsenter", "--net=/run/netns/k8slab-two-node", "qemu-system-x86_64"]);
  });

  it("keeps the kernel cmdline free of secrets and names the NIC eth0", () => {
    assert.equal(kernelCmdline(), "root=/dev/vda rw rootfstype=ext4 console=ttyS0,115200 net.ifnames=0 mitigations=off panic=10");
  });

  it("changes the run fingerprint when the spec or image changes, not otherwise", () => {
    const a = JSON.stringify(runFingerprint(spec, "k1", "tcg"));
    assert.equal(a, JSON.stringify(runFingerprint(parseMachineSpec(node1), "k1", "tcg")));
    assert.notEqual(a, JSON.stringify(runFingerprint(spec, "k2", "tcg")));
    assert.notEqual(a, JSON.stringify(runFingerprint(parseMachineSpec({ ...node1, memoryMiB: 4096 }), "k1", "tcg")));
    // A new containerd store serves the next new VM; the running one is not restarted for it.
    assert.equal(a, JSON.stringify(runFingerprint(parseMachineSpec({ ...node1, containerdStore: "/s/containerd.img" }), "k1", "tcg")));
  });

  it("attaches the containerd store's overlay only when the VM was made with one", () => {
    assert.ok(!argv.some((a) => a.includes(paths.containerdDisk)));
    const withStore = qemuArgv(spec, image, paths, "tcg", { containerd: true });
    assert.ok(withStore.includes(`file=${paths.containerdDisk},if=virtio,format=qcow2,cache=unsafe,discard=unmap`));
    assert.ok(qemuArgv(spec, image, paths, "tcg", { bundle: "/b/bundle.img" }).includes("file=/b/bundle.img,if=virtio,format=raw,readonly=on"));
  });
});

describe("forwards", () => {
  it("listens on host loopback and enters the namespace per connection", () => {
    assert.deepEqual(forwardArgv("k8slab-two-node", 2221, "192.168.0.21", 22), [
      "socat",
      "TCP-LISTEN:2221,bind=127.0.0.1,reuseaddr,fork",
      "EXEC:nsenter --net=/run/netns/k8slab-two-node socat STDIO TCP\\:192.168.0.21\\:22",
    ]);
  });
});

describe("ssh argv", () => {
  const ep = { host: "127.0.0.1", port: 2221, user: "root", keyFile: "/k/id_ed25519", knownHostsFile: "/k/known_hosts" };
  const opt = (argv: string[], name: string) => argv.find((a, i) => argv[i - 1] === "-o" && a.startsWith(`${name}=`));

  it("uses the lab key only and checks host keys strictly", () => {
    const argv = sshArgv(ep, "true");
    assert.equal(argv[0], "ssh");
    assert.deepEqual(argv.slice(-5), ["-l", "root", "--", "127.0.0.1", "true"], "the user as an option, and no host read as an option");
    assert.equal(opt(argv, "StrictHostKeyChecking"), "StrictHostKeyChecking=yes");
    assert.equal(opt(argv, "UserKnownHostsFile"), "UserKnownHostsFile=/k/known_hosts");
    assert.equal(opt(argv, "BatchMode"), "BatchMode=yes");
    assert.equal(opt(sshArgv(ep, "true", { acceptNew: true }), "StrictHostKeyChecking"), "StrictHostKeyChecking=accept-new");
  });

  it("reaches a LAN address through a jump host with ssh -W (the TCP source is the jump host)", () => {
    const argv = sshArgv({ ...ep, host: "192.168.0.22", port: 22 }, "hostname", { jump: ep });
    const proxy = opt(argv, "ProxyCommand")!;
    assert.match(proxy, /^ProxyCommand=ssh .* -W %h:%p -l root -- 127\.0\.0\.1$/);
    assert.match(proxy, / -p 2221 /);
    assert.deepEqual(argv.slice(-3), ["--", "192.168.0.22", "hostname"]);
  });
});

describe("guest config", () => {
  const spec = parseMachineSpec(node1);
  const keys = { authorizedKey: "ssh-ed25519 AAAAlab k8slab-two-node\n", hostKey: "PRIVATE\n", hostKeyPub: "ssh-ed25519 AAAAhost k8slab-host\n" };

  it("renders a static networkd config matched by MAC", () => {
    assert.equal(
      networkdConfig(spec),
      [
        "# k8slab: the lab LAN (static; no DHCP on the lab bridge)",
        "[Match]",
        `MACAddress=${macFor("two-node", "node1")}`,
        "",
        "[Network]",
        "Address=192.168.0.21/24",
        "Gateway=192.168.0.1",
        "LinkLocalAddressing=no",
        "IPv6AcceptRA=no",
        "",
      ].join("\n"),
    );
  });

  it("renders /etc/hosts with the node and its peers, and resolv.conf", () => {
    const hosts = hostsFile(spec);
    assert.match(hosts, /^192\.168\.0\.21\tnode1$/m);
    assert.match(hosts, /^192\.168\.0\.22\tnode2$/m);
    assert.equal(hosts.match(/node1/g)?.length, 1);
    assert.equal(resolvConf(spec), "nameserver 192.168.0.1\n");
    assert.equal(resolvConf(parseMachineSpec({ ...node1, nameservers: ["192.168.0.53"] })), "nameserver 192.168.0.53\n");
  });

  it("puts hostname, address, keys into the seed with safe modes", () => {
    const files = new Map(seedFiles(spec, keys).map((f) => [f.path, f]));
    assert.equal(files.get("etc/hostname")?.content, "node1\n");
    assert.equal(files.get("root/.ssh/authorized_keys")?.content, "ssh-ed25519 AAAAlab k8slab-two-node\n");
    assert.equal(files.get("root/.ssh/authorized_keys")?.mode, 0o600);
    assert.equal(files.get("etc/ssh/ssh_host_ed25519_key")?.mode, 0o600);
    assert.equal(files.get("etc/systemd/network/10-k8slab-lan.network")?.content, networkdConfig(spec));
    assert.equal(JSON.parse(files.get("etc/k8slab/machine.json")!.content).interface, "eth0");
  });

  it("writes a known_hosts line for the loopback port, the address and the name", () => {
    assert.equal(knownHostsLine(spec, keys.hostKeyPub), "[127.0.0.1]:2221,192.168.0.21,node1 ssh-ed25519 AAAAhost\n");
  });
});

describe("the host's kernel", () => {
  const probe = (o: Partial<KernelProbe> & { loadable?: string[] } = {}): KernelProbe & { tried: string[] } => {
    const tried: string[] = [];
    return {
      loaded: () => false,
      modprobe: async (m) => {
        tried.push(m);
        return (o.loadable ?? []).includes(m);
      },
      config: "",
      builtin: "",
      tried,
      ...o,
    };
  };

  it("asks a VM lab for taps only, container nodes for their dataplane's features", () => {
    assert.deepEqual(
      kernelNeeds("qemu", "vxlan", "ipvs").map((n) => n.module),
      ["tun"],
    );
    assert.deepEqual(
      kernelNeeds("container", "vxlan", "iptables").map((n) => n.module),
      ["bridge", "veth", "br_netfilter", "overlay", "nf_tables", "vxlan"],
    );
    assert.deepEqual(
      kernelNeeds("container", "udp", "ipvs")
        .map((n) => n.module)
        .slice(5),
      ["tun", "ip_vs"],
    );
    assert.deepEqual(kernelNeeds("ssh", "vxlan", "iptables"), []);
  });

  it("takes a module loaded, built in (config or modules.builtin) or loadable, and refuses one with none, naming the fix", async () => {
    const needs = kernelNeeds("container", "vxlan", "ipvs");
    const all = needs.map((n) => n.module);
    assert.deepEqual(await checkKernel(needs, probe({ loaded: () => true })), []);
    assert.deepEqual(await checkKernel(needs, probe({ loadable: all })), []);
    const config = needs.map((n) => `${n.config}=y`).join("\n");
    const built = probe({ config });
    assert.deepEqual(await checkKernel(needs, built), []);
    assert.deepEqual(built.tried, [], "a built-in module is not modprobed");
    assert.deepEqual(await checkKernel(needs, probe({ builtin: all.map((m) => `kernel/net/x/${m}.ko`).join("\n") })), []);
    // CONFIG_IP_VS=m is a module: built in it is not, and here it cannot be loaded.
    const problems = await checkKernel(needs, probe({ config: config.replace("CONFIG_IP_VS=y", "CONFIG_IP_VS=m") }));
    assert.equal(problems.length, 1);
    assert.match(
      problems[0],
      /^kernel: ip_vs \(CONFIG_IP_VS\) is neither loaded, loadable nor built in, and kube-proxy's ipvs mode .*; modprobe ip_vs, or boot a kernel that has it, or set services\.kubeProxyMode: iptables or nftables, or driver\.kind: qemu$/,
    );
  });
});

describe("preflight maths", () => {
  const routes = [
    { dst: "default", dev: "eth0" },
    { dst: "192.0.2.0/24", dev: "eth0" },
    { dst: "192.0.2.2", dev: "eth0", type: "local", table: "local" },
    { dst: "192.0.2.255", dev: "eth0", type: "broadcast", table: "local" },
    { dst: "127.0.0.0/8", dev: "lo", type: "local", table: "local" },
  ];

  it("finds no overlap for the reference LAN on a typical host", () => {
    assert.deepEqual(overlappingRoutes("192.168.0.0/24", routes), []);
  });

  it("finds routes inside, around and equal to the lab LAN", () => {
    assert.deepEqual(
      overlappingRoutes("192.0.2.0/24", routes).map((r) => r.dst),
      ["192.0.2.0/24", "192.0.2.2"],
    );
    assert.deepEqual(
      overlappingRoutes("192.168.0.0/24", [{ dst: "192.168.0.0/16" }]).map((r) => r.dst),
      ["192.168.0.0/16"],
    );
    assert.deepEqual(
      overlappingRoutes("192.168.0.0/16", [{ dst: "192.168.7.0/24" }]).map((r) => r.dst),
      ["192.168.7.0/24"],
    );
    assert.deepEqual(overlappingRoutes("192.168.0.0/24", [{ dst: "192.168.1.0/24" }]), []);
  });

  it("counts guest memory plus QEMU overhead against MemAvailable", () => {
    assert.equal(memAvailableMiB("MemTotal: 100 kB\nMemAvailable:    4194304 kB\n"), 4096);
    assert.deepEqual(checkMemory([{ name: "node1", memoryMiB: 2048 }], 4096), []);
    const p = checkMemory(
      [
        { name: "node1", memoryMiB: 2048 },
        { name: "node2", memoryMiB: 2048 },
      ],
      4096,
    );
    assert.equal(p.length, 1);
    assert.match(p[0], /^memory: node1 2048 MiB \+ node2 2048 MiB .* needs 4864 MiB, only 4096 MiB available$/);
  });
});

describe("image inputs", () => {
  it("lists the packages without comments and includes what the issue asks for", () => {
    const pkgs = imagePackages();
    for (const p of [
      "systemd-sysv",
      "udev",
      "kmod",
      "dbus",
      "openssh-server",
      "iproute2",
      "containerd",
      "runc",
      "iptables",
      "conntrack",
      "ipset",
      "ca-certificates",
      "nginx",
      "libnginx-mod-http-js",
      "linux-image-amd64",
    ]) {
      assert.ok(pkgs.includes(p), p);
    }
    assert.ok(!pkgs.some((p) => p.includes("#") || p.includes(" ")));
    assert.deepEqual(imagePackages("# c\na\n\nb # why\n"), ["a", "b"]);
  });

  it("keys the image by its inputs", () => {
    const inputs = imageInputs();
    assert.equal(imageKey(inputs), imageKey({ ...inputs }));
    assert.match(imageKey(inputs), /^trixie-[0-9a-f]{16}$/);
    assert.notEqual(imageKey(inputs), imageKey({ ...inputs, "guest/packages.txt": `${inputs["guest/packages.txt"]}vim\n` }));
    assert.notEqual(imageKey(inputs), imageKey({ ...inputs, "image-build.ts": `${inputs["image-build.ts"]}\n` }));
  });
});

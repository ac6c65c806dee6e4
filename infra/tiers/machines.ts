// Machines: the lab's nodes (QEMU VMs or LXC system containers on an isolated LAN, or existing hosts over SSH) and how to reach them.
import * as pulumi from "@pulumi/pulumi";
import { type Lab, type LabNode, ownsMachines } from "../../core/index.ts";
import { BUNDLE_DISK_LABEL } from "../../core/names.ts";
import { API_SERVER_PORT, bundleFilesFor, NODE_PATHS } from "../../core/node.ts";
import { shq } from "../../core/shell.ts";
import { machineSpecs } from "../../scripts/machines/lab-machines.ts";
import { ctRunInputs } from "../../scripts/machines/lxc-config.ts";
import { guestRunInputs } from "../../scripts/machines/render.ts";
import { VM_SSH_WAIT_SEC } from "../../scripts/machines/spec.ts";
import { sshCommandLine } from "../../scripts/machines/ssh.ts";
import { BUNDLE_DISK_INDEX } from "../../scripts/toolchain/bundle-disk.ts";
import { bundleDir } from "../../scripts/toolchain/paths.ts";
import { Command, type SshEndpoint } from "../provider/command.ts";
import { Tier, type TierArgs } from "../tier.ts";

/** The machine layer's command line (scripts/machines/cli.ts), run from the project root; JSON arrives on stdin. */
const MACHINES = "node_modules/.bin/tsx scripts/machines/cli.ts";
const withSpec = (subcommand: string) => `printf '%s' "$K8SLAB_SPEC" | ${MACHINES} ${subcommand}`;

/**
 * The node's binaries: bin/ lands in /usr/local/bin, cni/bin/ in /opt/cni/bin. Copied from the bundle disk when the
 * VM has the one with diskKey (install: a new file, so a running binary is replaced, not written into), else one tar
 * stream from the bundle over ssh. Nothing is downloaded on the node.
 */
export function pushBundleCommand(files: string[], ep: SshEndpoint, diskKey?: string): string {
  const transform = `s,^bin/,${NODE_PATHS.bin.slice(1)}/,;s,^cni/bin/,${NODE_PATHS.cniBin.slice(1)}/,`;
  const stream = `tar -C ${shq(bundleDir())} --transform ${shq(transform)} -cf - ${files.join(" ")} | ${sshCommandLine(ep, "tar -C / --no-same-owner -xf -")}`;
  if (!diskKey) return stream;
  const d = "/run/k8slab-bundle";
  const install = (prefix: string, to: string) => {
    const these = files.filter((f) => f.startsWith(prefix) && !f.slice(prefix.length).includes("/"));
    return these.length ? `install -m 0755 -t ${to} ${these.join(" ")}` : "true";
  };
  const fromDisk = [
    `mkdir -p ${d} ${NODE_PATHS.bin} ${NODE_PATHS.cniBin}`,
    `{ mountpoint -q ${d} || mount -o ro LABEL=${BUNDLE_DISK_LABEL} ${d}; } 2>/dev/null || exit 3`,
    `cd ${d} && grep -qF '"key": "${diskKey}"' ${BUNDLE_DISK_INDEX} && ${install("bin/", NODE_PATHS.bin)} && ${install("cni/bin/", NODE_PATHS.cniBin)}`,
    `r=$?; cd / && umount ${d}; exit $r`,
  ].join("\n");
  return `if ${sshCommandLine(ep, fromDisk)}; then echo ${shq(`binaries installed from the bundle disk ${diskKey}`)}; else ${stream}; fi`;
}

/** Where this machine reaches kube-apiserver: the loopback forward (qemu, container) or the lab file's endpoint (ssh). */
export function apiServerEndpoint(lab: Lab): string {
  if (lab.driver.kind === "ssh") return lab.driver.apiServerEndpoint ?? `${lab.controlPlane.address}:${API_SERVER_PORT}`;
  return `127.0.0.1:${lab.driver.apiServerPort}`;
}

export class Machines extends Tier {
  /** Per node name: how later tiers' commands reach it (key and known_hosts are files of the lab's state folder). */
  readonly connections: Record<string, pulumi.Output<SshEndpoint>>;
  readonly apiServerEndpoint: string;

  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("Machines", name, args, opts);
    const { lab } = args;
    this.apiServerEndpoint = apiServerEndpoint(lab);
    const { net, machines } = machineSpecs(lab);

    // The LAN namespace and the lab's SSH key; deleting it removes everything of the lab that is left.
    const lan = new Command(
      "lan",
      {
        create: withSpec("net-up"),
        delete: `${MACHINES} down ${lab.name}`,
        environment: { K8SLAB_SPEC: JSON.stringify(net) },
        triggers: [JSON.stringify(net)],
      },
      this.childOpts(),
    );

    const endpoints: Record<string, pulumi.Output<SshEndpoint>> = {};
    if (ownsMachines(lab)) {
      // The same Command for both: vm-up/vm-down or ct-up/ct-down take the same spec.
      const [kind, up, down, guest] = lab.driver.kind === "qemu" ? ["vm", "vm-up", "vm-down", guestRunInputs()] : ["ct", "ct-up", "ct-down", ctRunInputs()];
      // The disks `up` made (containerd store, bundle disk) go to VMs started from now on: not a trigger.
      const disks = lab.driver.kind === "qemu" ? { containerdStore: args.containerdStore, bundleDisk: args.bundleDisk?.file } : {};
      for (const spec of machines) {
        const vm = new Command(
          `${kind}-${spec.name}`,
          {
            create: withSpec(up),
            delete: `printf '%s' '${JSON.stringify({ lab: lab.name, name: spec.name, netns: net.netns })}' | ${MACHINES} ${down}`,
            // K8SLAB_GUEST: a changed QEMU invocation (CPU model, kernel command line) or LXC config restarts the node on its disk.
            environment: { K8SLAB_SPEC: JSON.stringify({ ...spec, ...disks }), K8SLAB_GUEST: JSON.stringify(guest) },
            // A changed spec (CPUs, memory, address) replaces the VM; the old one goes first, it holds the ports.
            triggers: [JSON.stringify(spec)],
            // Longer than vm-up's own wait for ssh, so its message (with the console's tail) is the one shown.
            timeoutSec: VM_SSH_WAIT_SEC + 120,
          },
          this.childOpts({ deleteBeforeReplace: true }, [lan]),
        );
        endpoints[spec.name] = vm.stdout.apply((out) => JSON.parse(out).ssh as SshEndpoint);
      }
    } else {
      for (const node of lab.nodes) endpoints[node.name] = this.existingHost(lab, node, lan);
    }

    // Every later tier's units run these binaries: the node is only ready once they are there.
    const bundleDisk = lab.driver.kind === "qemu" ? args.bundleDisk : undefined;
    const ready: Record<string, pulumi.Output<SshEndpoint>> = {};
    for (const node of lab.nodes) {
      const files = bundleFilesFor(node);
      const push = new Command(
        `bundle-${node.name}`,
        {
          create: endpoints[node.name].apply((ep) => pushBundleCommand(files, ep, bundleDisk?.key)),
          // A rebuilt binary is pushed again (update), not the node replaced.
          environment: { K8SLAB_BUNDLE_SHA256: files.map((f) => `${f}=${args.bundleFiles?.[f] ?? "missing"}`).join(" ") },
        },
        this.childOpts(),
      );
      ready[node.name] = pulumi.all([endpoints[node.name], push.id]).apply(([ep]) => ep);
    }
    this.connections = ready;
    this.registerOutputs({ apiServerEndpoint: this.apiServerEndpoint });
  }

  /** ssh driver: nothing to create, only wait until the host answers. */
  private existingHost(lab: Lab, node: LabNode, lan: Command): pulumi.Output<SshEndpoint> {
    const ssh = node.ssh!;
    const wait = new Command(
      `host-${node.name}`,
      { create: withSpec(`ssh-up --lab ${lab.name}`), environment: { K8SLAB_SPEC: JSON.stringify(ssh) }, triggers: [JSON.stringify(ssh)] },
      this.childOpts({}, [lan]),
    );
    return wait.stdout.apply((out) => JSON.parse(out) as SshEndpoint);
  }
}

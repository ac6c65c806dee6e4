// Machines: the lab's nodes (QEMU VMs on an isolated LAN, or existing hosts over SSH) and how to reach them.
import { readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import type { types } from "@pulumi/command";
import type { Lab, LabNode } from "../lab/index.js";
import { API_SERVER_PORT } from "../render/index.js";
import { Tier, type TierArgs } from "../tier.js";

/** The machine layer's command line (scripts/machines/cli.ts), run from the project root; JSON arrives on stdin. */
const MACHINES = "node_modules/.bin/tsx scripts/machines/cli.ts";
const withSpec = (subcommand: string) => `printf '%s' "$K8SLAB_SPEC" | ${MACHINES} ${subcommand}`;

/** What the machine layer is asked for: the lab LAN and one VM per node (see scripts/machines/spec.ts). */
export function machineSpecs(lab: Lab) {
  const net = { lab: lab.name, netns: lab.netns, bridge: "lan0", gatewayCidr: `${lab.lan.gateway}/${lab.lan.prefixLength}` };
  if (lab.driver.kind !== "qemu") return { net, machines: [] };
  const { sshPortBase, apiServerPort } = lab.driver;
  const hosts = lab.nodes.map((n) => ({ name: n.name, address: n.address }));
  const machines = lab.nodes.map((n) => ({
    lab: lab.name,
    name: n.name,
    address: n.address,
    prefixLength: lab.lan.prefixLength,
    gateway: lab.lan.gateway,
    cpus: n.cpus,
    memoryMiB: n.memoryMiB,
    sshPort: sshPortBase + n.index,
    extraForwards: n.isControlPlane ? [{ host: apiServerPort, guest: API_SERVER_PORT }] : [],
    netns: net.netns,
    bridge: net.bridge,
    hosts,
  }));
  return { net, machines };
}

/** Where this machine reaches kube-apiserver: the loopback forward (qemu) or the lab file's endpoint (ssh). */
export function apiServerEndpoint(lab: Lab): string {
  if (lab.driver.kind === "qemu") return `127.0.0.1:${lab.driver.apiServerPort}`;
  return lab.driver.apiServerEndpoint ?? `${lab.controlPlane.address}:${API_SERVER_PORT}`;
}

/** How this machine reaches a node's sshd (the key is a file in the lab's state folder). */
export interface SshEndpoint {
  host: string;
  port: number;
  user: string;
  keyFile: string;
}

export class Machines extends Tier {
  /** Per node name: the SSH connection later tiers give remote.Command (the private key is a secret). */
  readonly connections: Record<string, pulumi.Output<types.input.remote.ConnectionArgs>> = {};
  /** Per node name: the same endpoint without the key's content, for `k8slab status`. */
  readonly sshEndpoints: Record<string, pulumi.Output<SshEndpoint>>;
  readonly apiServerEndpoint: string;

  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("Machines", name, args, opts);
    const { lab } = args;
    this.apiServerEndpoint = apiServerEndpoint(lab);
    const { net, machines } = machineSpecs(lab);

    // The LAN namespace and the lab's SSH key; deleting it removes everything of the lab that is left.
    const lan = new command.local.Command(
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
    if (lab.driver.kind === "qemu") {
      for (const spec of machines) {
        const vm = new command.local.Command(
          `vm-${spec.name}`,
          {
            create: withSpec("vm-up"),
            delete: `printf '%s' '${JSON.stringify({ lab: lab.name, name: spec.name, netns: net.netns })}' | ${MACHINES} vm-down`,
            environment: { K8SLAB_SPEC: JSON.stringify(spec) },
            // A changed spec (CPUs, memory, address) replaces the VM; the old one goes first, it holds the ports.
            triggers: [JSON.stringify(spec)],
          },
          this.childOpts({ deleteBeforeReplace: true }, [lan]),
        );
        endpoints[spec.name] = vm.stdout.apply((out) => JSON.parse(out).ssh as SshEndpoint);
      }
    } else {
      for (const node of lab.nodes) endpoints[node.name] = this.existingHost(lab, node, lan);
    }

    this.sshEndpoints = endpoints;
    for (const [nodeName, endpoint] of Object.entries(endpoints)) {
      // Secret as a whole: it carries the private key.
      this.connections[nodeName] = pulumi.secret(
        endpoint.apply((ep) => ({ host: ep.host, port: ep.port, user: ep.user, privateKey: readFileSync(ep.keyFile, "utf8") })),
      );
    }
    this.registerOutputs({ apiServerEndpoint: this.apiServerEndpoint });
  }

  /** ssh driver: nothing to create, only wait until the host answers. */
  private existingHost(lab: Lab, node: LabNode, lan: command.local.Command): pulumi.Output<SshEndpoint> {
    const ssh = node.ssh!;
    const wait = new command.local.Command(
      `host-${node.name}`,
      { create: withSpec(`ssh-up --lab ${lab.name}`), environment: { K8SLAB_SPEC: JSON.stringify(ssh) }, triggers: [JSON.stringify(ssh)] },
      this.childOpts({}, [lan]),
    );
    return wait.stdout.apply((out) => JSON.parse(out) as SshEndpoint);
  }
}

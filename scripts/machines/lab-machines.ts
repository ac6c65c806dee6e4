// The machine layer's view of a lab: its LAN and one VM per node, as scripts/machines/spec.ts shapes them.
import { type Lab, ownsMachines } from "../../core/index.ts";
import { LAN_BRIDGE } from "../../core/names.ts";
import { API_SERVER_PORT } from "../../core/node.ts";

/** What the machine layer is asked for: the lab LAN and one machine (VM or container) per node (see scripts/machines/spec.ts). */
export function machineSpecs(lab: Lab) {
  const net = { lab: lab.name, netns: lab.netns, bridge: LAN_BRIDGE, gatewayCidr: `${lab.lan.gateway}/${lab.lan.prefixLength}` };
  if (!ownsMachines(lab)) return { net, driver: undefined, machines: [] };
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
  return { net, driver: lab.driver.kind, machines };
}

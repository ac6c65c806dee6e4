// The lab LAN: one network namespace per lab with a bridge holding the gateway address, and one tap per VM.
// Nothing here touches the host namespace's interfaces, routes or firewall.
import fs from "node:fs";
import { $ } from "zx";
import { type LabNetSpec, macFor } from "./spec.ts";

export function netnsExists(netns: string): boolean {
  return fs.existsSync(`/run/netns/${netns}`);
}

async function linkExists(netns: string, dev: string): Promise<boolean> {
  return (await $`ip -n ${netns} link show dev ${dev}`.nothrow().quiet()).exitCode === 0;
}

/** Create (or complete) the lab namespace, its bridge and the gateway address. Idempotent. */
export async function netUp(spec: LabNetSpec): Promise<void> {
  const { netns, bridge, gatewayCidr } = spec;
  if (!netnsExists(netns)) await $`ip netns add ${netns}`.quiet();
  await $`ip -n ${netns} link set lo up`.quiet();
  if (!(await linkExists(netns, bridge))) {
    // STP off and no forward delay: ports forward as soon as a VM's tap comes up. A fixed MAC, or
    // the bridge takes its lowest port's and the guests' ARP entry for the gateway goes stale.
    const mac = macFor(spec.lab, "@gateway");
    await $`ip -n ${netns} link add ${bridge} address ${mac} type bridge stp_state 0 forward_delay 0`.quiet();
  }
  // The namespace has no uplink: the gateway routes nowhere, so guests have no outbound path.
  const addrs = JSON.parse((await $`ip -n ${netns} -j -4 addr show dev ${bridge}`.quiet()).stdout) as {
    addr_info: { local: string; prefixlen: number }[];
  }[];
  for (const a of addrs[0]?.addr_info ?? []) {
    if (`${a.local}/${a.prefixlen}` !== gatewayCidr) await $`ip -n ${netns} addr del ${a.local}/${a.prefixlen} dev ${bridge}`.quiet();
  }
  await $`ip -n ${netns} addr replace ${gatewayCidr} dev ${bridge}`.quiet();
  await $`ip -n ${netns} link set ${bridge} up`.quiet();
}

/** Delete the namespace (its bridge and any taps go with it). Idempotent. VMs must be stopped first. */
export async function netDown(spec: Pick<LabNetSpec, "netns">): Promise<void> {
  if (netnsExists(spec.netns)) await $`ip netns del ${spec.netns}`.quiet();
}

/** A persistent tap for one VM, enslaved to the lab bridge; QEMU attaches to it by name. Idempotent. */
export async function tapUp(netns: string, bridge: string, tap: string): Promise<void> {
  if (!(await linkExists(netns, tap))) await $`ip -n ${netns} tuntap add dev ${tap} mode tap`.quiet();
  await $`ip -n ${netns} link set ${tap} master ${bridge}`.quiet();
  await $`ip -n ${netns} link set ${tap} up`.quiet();
}

export async function tapDown(netns: string, tap: string): Promise<void> {
  if (netnsExists(netns) && (await linkExists(netns, tap))) await $`ip -n ${netns} link del ${tap}`.quiet();
}

export interface NetStatus {
  netns: string;
  exists: boolean;
  links: { name: string; state: string; master?: string; addresses: string[] }[];
}

export async function netStatus(netns: string): Promise<NetStatus> {
  if (!netnsExists(netns)) return { netns, exists: false, links: [] };
  const links = JSON.parse((await $`ip -n ${netns} -j addr show`.quiet()).stdout) as {
    ifname: string;
    operstate: string;
    master?: string;
    addr_info: { family: string; local: string; prefixlen: number }[];
  }[];
  return {
    netns,
    exists: true,
    links: links.map((l) => ({
      name: l.ifname,
      state: l.operstate,
      ...(l.master ? { master: l.master } : {}),
      addresses: l.addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`),
    })),
  };
}

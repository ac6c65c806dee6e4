// A lab file's text -> YAML -> strict schema -> relations between fields -> the derived, frozen Lab.
// No I/O: scripts/lab-file.ts reads the file.
import path from "node:path";
import yaml from "js-yaml";
import type { z } from "zod";
import {
  DNS_LABEL_MAX,
  FLANNEL_BACKENDS,
  type FlannelBackend,
  headlessService,
  NETNS_MAX,
  netnsOf,
  RESERVED_WORKLOAD_NAMES,
  WORKLOAD_NAMESPACE,
} from "./names.ts";
import { formatCidr, isHostOf, nthHost, nthSubnet, overlaps, parseAddress, parseCidr } from "./net.ts";
import { type LabFile, type LabFileNode, labFileSchema } from "./schema.ts";

/** One thing wrong with a lab file: where (a field path such as nodes[1].address) and why. */
export interface Problem {
  path: string;
  reason: string;
}

export interface LabNode extends LabFileNode {
  /** Position in the lab file; fixes the node's pod subnet and management port. */
  index: number;
  /** The node's share of the pod network, e.g. 172.30.1.0/24 for the first node. */
  podSubnet: string;
  isControlPlane: boolean;
  isWorker: boolean;
}

/** A validated lab with every derived value computed once. Frozen: tiers read it, never change it. */
export interface Lab {
  /** Absolute path of the lab file. */
  file: string;
  name: string;
  /** The network namespace that holds the lab LAN (bridge, taps, the outside client). */
  netns: string;
  driver: LabFile["driver"];
  lan: LabFile["lan"] & { prefixLength: number };
  nodes: readonly LabNode[];
  controlPlane: LabNode;
  pods: Omit<LabFile["pods"], "flannel"> & {
    /** The pods' MTU: the LAN MTU less what the backend's encapsulation adds (VXLAN 50, udp 28, host-gw 0). */
    mtu: number;
    flannel: {
      backend: FlannelBackend;
      /** vxlan's VNI (1 by default; the other backends have none and keep 1 here, unused). */
      vni: number;
      /** The encapsulation's UDP port (vxlan, udp); none for host-gw. */
      port?: number;
      /** The device flanneld creates and names (flannel.<VNI>, flannel0); none for host-gw. */
      device?: string;
    };
  };
  services: LabFile["services"] & {
    /** The kubernetes Service (the API server's ClusterIP): always the range's first address. */
    kubernetesServiceIP: string;
  };
  ingress: LabFile["ingress"];
  workloads: LabFile["workloads"];
}

/** The LAN prefixes the machine layer gives a VM (a /31 or /32 leaves no room for a gateway). */
export const LAN_PREFIX = { min: 8, max: 30 } as const;

export type LoadResult = { ok: true; lab: Lab } | { ok: false; problems: Problem[] };

/** Validates lab file text; `file` is used in messages and to resolve relative paths. */
export function parseLab(text: string, file: string): LoadResult {
  let raw: unknown;
  try {
    raw = yaml.load(text, { filename: file, schema: yaml.CORE_SCHEMA });
  } catch (err) {
    if (err instanceof yaml.YAMLException) {
      const at = err.mark ? `:${err.mark.line + 1}:${err.mark.column + 1}` : "";
      return { ok: false, problems: [{ path: `${path.basename(file)}${at}`, reason: err.reason }] };
    }
    // js-yaml recurses per nesting level: a hostile file ends in a RangeError, not a YAMLException.
    return {
      ok: false,
      problems: [
        {
          path: path.basename(file),
          reason: err instanceof RangeError ? "is nested too deeply to be a lab file" : `is not YAML k8slab can read (${(err as Error).message})`,
        },
      ],
    };
  }
  let parsed: ReturnType<typeof labFileSchema.safeParse>;
  try {
    parsed = labFileSchema.superRefine(checkRelations, { when: () => true }).safeParse(raw ?? {}, { reportInput: true });
  } catch (err) {
    return {
      ok: false,
      problems: [
        {
          path: path.basename(file),
          reason: err instanceof RangeError ? "is nested too deeply to be a lab file" : `cannot be checked (${(err as Error).message})`,
        },
      ],
    };
  }
  if (!parsed.success) return { ok: false, problems: parsed.error.issues.flatMap(toProblems) };
  return { ok: true, lab: derive(parsed.data, file) };
}

/** Keys older lab files had whose value k8slab now derives: say so rather than "unknown key". */
const DERIVED_KEYS: Record<string, string> = {
  "pods.flannel.device": "is derived, not set: flanneld names its VXLAN device flannel.<vni> (remove this key)",
};

function toProblems(issue: z.core.$ZodIssue): Problem[] {
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => ({
      path: formatPath([...issue.path, key]),
      reason: DERIVED_KEYS[formatPath([...issue.path, key]).replace(/\[\d+\]/g, "[]")] ?? "unknown key",
    }));
  }
  if ((issue.code === "invalid_type" || issue.code === "invalid_value") && issue.input === undefined) {
    return [
      {
        path: formatPath(issue.path),
        reason: issue.code === "invalid_value" ? `is required (${issue.message.replace(/^Invalid option: /, "")})` : "is required",
      },
    ];
  }
  if (issue.code === "invalid_type") {
    return [{ path: formatPath(issue.path), reason: `must be ${article(issue.expected)}, not ${describeValue(issue.input)}` }];
  }
  return [{ path: formatPath(issue.path), reason: issue.message }];
}

const article = (type: string) => (type === "int" ? "an integer" : /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`);

/** A value as a problem line shows it: its type, and short values themselves. */
function describeValue(v: unknown): string {
  if (v === null) return "empty (null)";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  const shown = JSON.stringify(v);
  return `${typeof v === "string" ? "the string" : `the ${typeof v}`} ${shown.length > 40 ? `${shown.slice(0, 37)}...` : shown}`;
}

/** ["nodes", 1, "address"] -> "nodes[1].address" */
export function formatPath(p: readonly PropertyKey[]): string {
  return p.reduce<string>((out, k) => (typeof k === "number" ? `${out}[${k}]` : out ? `${out}.${String(k)}` : String(k)), "") || "(lab)";
}

/**
 * Checks between fields. Runs even when some fields failed their own checks (so every problem
 * is reported at once), hence it reads the value loosely and skips what is malformed.
 */
function checkRelations(value: unknown, ctx: z.core.$RefinementCtx<unknown>): void {
  const lab = (value ?? {}) as Partial<Record<keyof LabFile, any>>;
  const add = (p: PropertyKey[], message: string) => ctx.addIssue({ code: "custom", path: p, message });

  // What a backend does not use is not set, so a lab file never says more than the lab does.
  const backend = lab.pods?.flannel?.backend as FlannelBackend | undefined;
  if (backend && backend !== "vxlan" && lab.pods.flannel.vni !== undefined)
    add(["pods", "flannel", "vni"], `is vxlan's; the ${backend} backend has none (remove it)`);
  if (backend === "host-gw" && lab.pods.flannel.port !== undefined)
    add(["pods", "flannel", "port"], "host-gw does not encapsulate: it has no port (remove it)");
  // host-gw routes each peer's pods via that peer's LAN address: every node must be on the one LAN (the ssh driver cannot promise it is one segment).
  if (backend === "host-gw" && lab.driver?.kind === "ssh")
    add(["pods", "flannel", "backend"], "host-gw needs the nodes on one layer-2 segment, which k8slab cannot check for existing hosts; use vxlan");

  const lan = parseCidr(lab.lan?.cidr);
  const pods = parseCidr(lab.pods?.cidr);
  const services = parseCidr(lab.services?.cidr);

  const networks = [
    ["lan", "lab LAN", lan],
    ["pods", "pod network", pods],
    ["services", "service network", services],
  ] as const;
  for (let i = 0; i < networks.length; i++) {
    for (let j = i + 1; j < networks.length; j++) {
      const [, nameA, a] = networks[i];
      const [keyB, nameB, b] = networks[j];
      if (a && b && overlaps(a, b)) add([keyB, "cidr"], `${nameB} ${formatCidr(b)} overlaps the ${nameA} ${formatCidr(a)}`);
    }
  }

  const gateway = parseAddress(lab.lan?.gateway);
  if (lan && gateway !== undefined && !isHostOf(lan, gateway)) {
    add(["lan", "gateway"], `${lab.lan.gateway} is not a host address of the lab LAN ${formatCidr(lan)}`);
  }
  const nodeCount = Array.isArray(lab.nodes) ? lab.nodes.length : 0;
  if (lan && (lan.prefix < LAN_PREFIX.min || lan.prefix > LAN_PREFIX.max)) {
    add(["lan", "cidr"], `a /${lan.prefix} lab LAN: the VMs take a /${LAN_PREFIX.min} to a /${LAN_PREFIX.max}`);
  } else if (lan && 2 ** (32 - lan.prefix) - 2 < nodeCount + 1) {
    add(["lan", "cidr"], `${formatCidr(lan)} has ${2 ** (32 - lan.prefix) - 2} host addresses, the gateway and ${nodeCount} nodes need ${nodeCount + 1}`);
  }

  if (typeof lab.name === "string" && netnsOf(lab.name).length > NETNS_MAX) {
    add(
      ["name"],
      `"${lab.name}" is ${lab.name.length} characters: its network namespace ${netnsOf(lab.name)} may have at most ${NETNS_MAX} (a name of at most ${NETNS_MAX - netnsOf("").length})`,
    );
  }

  if (services) {
    if (services.prefix > 28) add(["services", "cidr"], `a /${services.prefix} is too small for a Service range (at most /28)`);
    const kubernetesIP = services.base + 1;
    const dns = parseAddress(lab.services?.dnsIP);
    if (dns !== undefined && !isHostOf(services, dns)) {
      add(["services", "dnsIP"], `${lab.services.dnsIP} is outside the service network ${formatCidr(services)}`);
    } else if (dns === kubernetesIP) {
      add(["services", "dnsIP"], `${lab.services.dnsIP} is the kubernetes Service's address (the range's first); pick another, e.g. ${nthHost(services, 2)}`);
    }
  }

  const nodes: any[] = Array.isArray(lab.nodes) ? lab.nodes : [];
  const firstByName = new Map<string, number>();
  const firstByAddress = new Map<string, number>();
  nodes.forEach((n, i) => {
    if (typeof n?.name === "string") {
      if (firstByName.has(n.name)) add(["nodes", i, "name"], `duplicate node name "${n.name}" (also nodes[${firstByName.get(n.name)}])`);
      else firstByName.set(n.name, i);
    }
    const address = parseAddress(n?.address);
    if (address === undefined) return;
    if (firstByAddress.has(n.address)) add(["nodes", i, "address"], `duplicate address ${n.address} (also nodes[${firstByAddress.get(n.address)}])`);
    else firstByAddress.set(n.address, i);
    if (lan && !isHostOf(lan, address)) add(["nodes", i, "address"], `${n.address} is outside the lab LAN ${formatCidr(lan)}`);
    else if (address === gateway) add(["nodes", i, "address"], `${n.address} is the lab LAN's gateway`);
  });
  const withRole = (role: string) => nodes.filter((n) => Array.isArray(n?.roles) && n.roles.includes(role)).length;
  const controlPlanes = withRole("control-plane");
  if (nodes.length && controlPlanes !== 1) {
    add(["nodes"], `exactly one node must have the control-plane role, found ${controlPlanes}`);
  }
  if (nodes.length && nodes.every((n) => Array.isArray(n?.roles)) && withRole("worker") === 0) {
    add(["nodes"], "no node has the worker role: the workloads, CoreDNS and the ingress controller would have nowhere to run");
  }

  const subnetPrefix = lab.pods?.nodeSubnetPrefix;
  if (pods && Number.isInteger(subnetPrefix)) {
    // flannel leaves the first and the last subnet unused (its SubnetMin and SubnetMax defaults).
    const usable = subnetPrefix > pods.prefix ? 2 ** (subnetPrefix - pods.prefix) - 2 : 0;
    if (usable < nodes.length) {
      add(["pods", "nodeSubnetPrefix"], `/${subnetPrefix} subnets of ${formatCidr(pods)} leave room for ${usable} nodes, the lab has ${nodes.length}`);
    }
  }

  const range = /^(\d+)-(\d+)$/.exec(lab.services?.nodePortRange ?? "");
  if (range) {
    const [from, to] = [Number(range[1]), Number(range[2])];
    if (!(from >= 1 && from <= to && to <= 65535)) {
      add(["services", "nodePortRange"], `${lab.services.nodePortRange} is not a port range (1-65535, FROM <= TO)`);
    } else {
      const nodePort = lab.workloads?.businessManager?.nodePort;
      if (Number.isInteger(nodePort) && (nodePort < from || nodePort > to)) {
        add(["workloads", "businessManager", "nodePort"], `${nodePort} is outside the NodePort range ${from}-${to}`);
      }
    }
  }

  const workloadNames = [lab.workloads?.dataProduct?.name, lab.workloads?.businessManager?.name];
  if (workloadNames[0] && workloadNames[0] === workloadNames[1]) {
    add(["workloads", "businessManager", "name"], `"${workloadNames[1]}" is also data-product's name`);
  }
  // The Services each workload gets, checked as the cluster will see them.
  const dataProduct = workloadNames[0];
  if (typeof dataProduct === "string" && headlessService(dataProduct).length > DNS_LABEL_MAX) {
    add(
      ["workloads", "dataProduct", "name"],
      `"${dataProduct}" is ${dataProduct.length} characters: its headless Service ${headlessService(dataProduct)} would pass Kubernetes' ${DNS_LABEL_MAX} (a name of at most ${DNS_LABEL_MAX - headlessService("").length})`,
    );
  }
  (["dataProduct", "businessManager"] as const).forEach((key, i) => {
    const name = workloadNames[i];
    if ((RESERVED_WORKLOAD_NAMES as readonly string[]).includes(name))
      add(["workloads", key, "name"], `"${name}" is the Service the cluster itself owns in namespace ${WORKLOAD_NAMESPACE}`);
  });
  if (typeof dataProduct === "string" && workloadNames[1] === headlessService(dataProduct)) {
    add(["workloads", "businessManager", "name"], `"${workloadNames[1]}" is data-product's headless Service`);
  }
  const service = lab.ingress?.service;
  if (typeof service === "string" && workloadNames.every(Boolean) && !workloadNames.includes(service)) {
    add(["ingress", "service"], `"${service}" is not a workload Service (one of: ${workloadNames.join(", ")})`);
  }

  checkDriver(lab.driver, nodes, add);
}

function checkDriver(driver: any, nodes: any[], add: (p: PropertyKey[], m: string) => void): void {
  if (driver?.kind === "ssh") {
    nodes.forEach((n, i) => {
      if (n && typeof n === "object" && !n.ssh) add(["nodes", i, "ssh"], "is required with driver kind ssh (host, port, user, keyFile)");
    });
    return;
  }
  if (driver?.kind !== "qemu" && driver?.kind !== "container") return;
  nodes.forEach((n, i) => {
    if (n?.ssh) add(["nodes", i, "ssh"], `is only for driver kind ssh; ${driver.kind} nodes are reached through forwarded ports`);
  });
  const base = driver.sshPortBase;
  if (Number.isInteger(base) && base + nodes.length - 1 > 65535) {
    add(["driver", "sshPortBase"], `${base} + ${nodes.length - 1} nodes runs past port 65535`);
  }
  if (Number.isInteger(base) && driver.apiServerPort >= base && driver.apiServerPort < base + nodes.length) {
    add(["driver", "apiServerPort"], `${driver.apiServerPort} is also a node's ssh port (${base}-${base + nodes.length - 1})`);
  }
}

function derive(file: LabFile, filePath: string): Lab {
  const pods = parseCidr(file.pods.cidr)!;
  const services = parseCidr(file.services.cidr)!;
  const nodes = file.nodes.map((n, index) => {
    const ssh = n.ssh && { ...n.ssh, keyFile: path.resolve(path.dirname(filePath), n.ssh.keyFile) };
    return {
      ...n,
      ...(ssh ? { ssh } : {}),
      index,
      // The first subnet is skipped, as flannel does, so node1 gets 172.30.1.0/24.
      podSubnet: nthSubnet(pods, file.pods.nodeSubnetPrefix, index + 1),
      isControlPlane: n.roles.includes("control-plane"),
      isWorker: n.roles.includes("worker"),
    };
  });
  const lab: Lab = {
    file: filePath,
    name: file.name,
    netns: netnsOf(file.name),
    driver: file.driver,
    lan: { ...file.lan, prefixLength: parseCidr(file.lan.cidr)!.prefix },
    nodes,
    controlPlane: nodes.find((n) => n.isControlPlane)!,
    pods: { ...file.pods, mtu: file.lan.mtu - FLANNEL_BACKENDS[file.pods.flannel.backend].overhead, flannel: flannelOf(file.pods.flannel) },
    services: { ...file.services, kubernetesServiceIP: nthHost(services, 1) },
    ingress: file.ingress,
    workloads: file.workloads,
  };
  return deepFreeze(lab);
}

/** The backend's device, port and VNI, its defaults filled in. */
function flannelOf(f: LabFile["pods"]["flannel"]): Lab["pods"]["flannel"] {
  const b = FLANNEL_BACKENDS[f.backend];
  const vni = f.vni ?? 1;
  const port = f.port ?? b.defaultPort;
  const device = b.device(vni);
  return { backend: f.backend, vni, ...(port !== undefined ? { port } : {}), ...(device ? { device } : {}) };
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object" && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

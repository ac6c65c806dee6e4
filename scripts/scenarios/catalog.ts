// The scenario catalog: every scenarios/<id>.yaml, checked against the schema, with its steps
// written for any lab through {{variables}} the lab defines (ports, devices, names, addresses).
import fs from "node:fs";
import path from "node:path";
import yaml from "js-yaml";
import type { Lab, LabNode } from "../../core/index.ts";
import { formatPath } from "../../core/lab.ts";
import { CLUSTER_DNS, FLANNEL_ETCD_PREFIX, INGRESS_CONTROLLER, TOOLBOX, WORKLOAD_NAMESPACE } from "../../core/names.ts";
import { configPath, etcdctlCommand } from "../../core/node.ts";
import { repoRoot } from "../toolchain/paths.ts";
import { readText, SCENARIO_FILE } from "../user-file.ts";
import { type Scenario, type ScenarioStep, scenarioSchema } from "./schema.ts";

export const SCENARIO_DIR = path.join(repoRoot, "scenarios");

/** What a scenario's steps may name: values of the lab they run on. */
export function labVars(lab: Lab): Record<string, string> {
  const [n0, n1] = lab.nodes;
  const f = lab.pods.flannel;
  return {
    // vxlan's own: a lab on another backend has none of them (its scenarios do not fit it).
    ...(f.backend === "vxlan" ? { vxlanPort: String(f.port), vni: String(f.vni), flannelDevice: f.device! } : {}),
    bridge: lab.pods.bridge,
    podCidr: lab.pods.cidr,
    podMtu: String(lab.pods.mtu),
    dnsIP: lab.services.dnsIP,
    lanGateway: lab.lan.gateway,
    workloadNamespace: WORKLOAD_NAMESPACE,
    dnsNamespace: CLUSTER_DNS.namespace,
    dnsDeployment: CLUSTER_DNS.deployment,
    dnsService: CLUSTER_DNS.service,
    ingressNamespace: INGRESS_CONTROLLER.namespace,
    ingressController: INGRESS_CONTROLLER.name,
    ingressPort: String(INGRESS_CONTROLLER.port),
    ingressHost: lab.ingress.host,
    ingressClass: lab.ingress.className,
    businessManager: lab.workloads.businessManager.name,
    dataProduct: lab.workloads.dataProduct.name,
    dataProductPort: String(lab.workloads.dataProduct.port),
    nodePort: String(lab.workloads.businessManager.nodePort),
    dnsReplicas: String(CLUSTER_DNS.replicas),
    dataProductReplicas: String(lab.workloads.dataProduct.replicas),
    ingressName: lab.ingress.service,
    toolboxNamespace: TOOLBOX.namespace,
    toolboxSelector: TOOLBOX.selector,
    toolboxDaemonSet: TOOLBOX.daemonSet,
    kubeletConfig: configPath("kubelet.yaml"),
    etcdctl: etcdctlCommand(lab),
    leasePrefix: `${FLANNEL_ETCD_PREFIX}/subnets`,
    ...nodeVars("node0", n0),
    ...(n1 ? nodeVars("node1", n1) : {}),
  };
}

/** A node's name, LAN address, pod subnet, the subnet's network address (its gateway on the peers' overlay) and its lease key in etcd. */
function nodeVars(prefix: string, n: LabNode): Record<string, string> {
  const network = n.podSubnet.split("/")[0];
  return {
    [prefix]: n.name,
    [`${prefix}Address`]: n.address,
    [`${prefix}Subnet`]: n.podSubnet,
    [`${prefix}Gateway`]: network,
    [`${prefix}LeaseKey`]: n.podSubnet.replace("/", "-"),
  };
}

const VARIABLE = /\{\{(\w+)\}\}/g;
/** {{node0}}, {{node1Address}}, ...: a variable of the lab's Nth node. */
const NODE_VARIABLE = /\{\{node(\d+)[A-Za-z]*\}\}/g;
/** Variables only a vxlan lab defines. */
const VXLAN_VARIABLES = ["vxlanPort", "vni", "flannelDevice"];

/** Why a scenario cannot run on a lab (too few nodes, another flannel backend), or undefined when it can. */
export function doesNotFit(s: Scenario, lab: Lab): string | undefined {
  if (nodesNeeded(s) > lab.nodes.length) return `needs ${nodesNeeded(s)} nodes, lab ${lab.name} has ${lab.nodes.length}`;
  const vxlanOnly = [...JSON.stringify(s).matchAll(VARIABLE)].some((m) => VXLAN_VARIABLES.includes(m[1]));
  if (vxlanOnly && lab.pods.flannel.backend !== "vxlan") return `breaks flannel's vxlan path; lab ${lab.name} uses ${lab.pods.flannel.backend}`;
  return undefined;
}

/** A text with every {{name}} replaced; a name the lab does not define is an error. `asRegExp` escapes the values (a hop pattern). */
export function expand(text: string, vars: Record<string, string>, asRegExp = false): string {
  return text.replace(VARIABLE, (_, name: string) => {
    if (!(name in vars)) throw new Error(`{{${name}}} is not defined for this lab`);
    return asRegExp ? vars[name].replace(/[.*+?^${}()|[\]\\]/g, "\\$&") : vars[name];
  });
}

/** The scenario's texts and steps for this lab. */
export function forLab(s: Scenario, lab: Lab): Scenario {
  const vars = labVars(lab);
  const text = (t: string) => expand(t, vars);
  return {
    ...s,
    story: text(s.story),
    verdict: { tier: s.verdict.tier, hop: expand(s.verdict.hop, vars, true) },
    apply: s.apply.map((st) => expandStep(st, vars)),
    undo: s.undo.map((st) => expandStep(st, vars)),
    hints: s.hints.map(text),
    explanation: text(s.explanation),
  };
}

export function expandStep(step: ScenarioStep, vars: Record<string, string>): ScenarioStep {
  if ("run" in step) return { node: step.node, run: expand(step.run, vars) };
  if ("kubectl" in step) return { kubectl: step.kubectl.map((a) => expand(a, vars)) };
  return { client: expand(step.client, vars) };
}

export interface CatalogProblem {
  file: string;
  path: string;
  reason: string;
}

/**
 * Every scenario file, validated; problems name the file and the field. Variables are checked
 * against `lab` (a two-node lab defines them all; a lab with one node lacks node1*).
 */
export function loadCatalog(lab: Lab, dir = SCENARIO_DIR): { scenarios: Scenario[]; problems: CatalogProblem[] } {
  const scenarios: Scenario[] = [];
  const problems: CatalogProblem[] = [];
  const known = new Set(Object.keys(labVars(lab)));
  for (const name of fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .sort()) {
    const file = path.join(dir, name);
    const text = readText(file, SCENARIO_FILE);
    if (typeof text !== "string") {
      problems.push({ file, path: "(file)", reason: text.reason });
      continue;
    }
    let raw: unknown;
    try {
      raw = yaml.load(text, { schema: yaml.CORE_SCHEMA });
    } catch (err) {
      problems.push({ file, path: "(file)", reason: (err as yaml.YAMLException).reason ?? (err as Error).message });
      continue;
    }
    const parsed = scenarioSchema.safeParse(raw, { reportInput: true });
    if (!parsed.success) {
      for (const i of parsed.error.issues) problems.push({ file, path: formatPath(i.path), reason: i.message });
      continue;
    }
    const s = parsed.data;
    if (`${s.id}.yaml` !== name) problems.push({ file, path: "id", reason: `"${s.id}" differs from the file name` });
    try {
      new RegExp(s.verdict.hop);
    } catch (err) {
      problems.push({ file, path: "verdict.hop", reason: `not a regular expression: ${(err as Error).message}` });
    }
    // Every text may name lab variables: the steps, the verdict's hop, the story, hints and explanation.
    for (const [field, value] of Object.entries(s)) {
      // A node this lab lacks makes the scenario not fit it (nodesNeeded), not the file wrong.
      for (const [, v] of JSON.stringify(value).matchAll(VARIABLE))
        if (!known.has(v) && !VXLAN_VARIABLES.includes(v) && !(Number(/^node(\d+)[A-Za-z]*$/.exec(v)?.[1] ?? -1) >= lab.nodes.length))
          problems.push({ file, path: field, reason: `{{${v}}} is not a lab variable` });
    }
    scenarios.push(s);
  }
  return { scenarios, problems };
}

/** The nodes a scenario uses (its steps' nodes, and the node variables any of its texts names): a lab with fewer cannot run it. */
export const nodesNeeded = (s: Scenario) =>
  Math.max(
    0,
    ...[...s.apply, ...s.undo].map((st) => ("node" in st ? st.node + 1 : 0)),
    ...[...JSON.stringify(s).matchAll(NODE_VARIABLE)].map((m) => Number(m[1]) + 1),
  );

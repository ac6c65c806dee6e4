// The live values the HTML page draws beside the lab file's: pods and their addresses, the Services'
// ClusterIPs, each node's VTEP MAC. Three reads; what cannot be read is left out of the picture.
import type { Lab } from "../../core/index.ts";
import { CLUSTER_DNS, TOOLBOX, WORKLOAD_NAMESPACE } from "../../core/names.ts";
import { parseRows, parseVxlanLink } from "../probes/parse.ts";
import type { LabAccess } from "../probes/types.ts";
import type { LiveTopology } from "./html.ts";

const POD_ROWS = '{range .items[*]}{.metadata.name}{"\\t"}{.status.podIP}{"\\t"}{.spec.nodeName}{"\\t"}{.spec.hostNetwork}{"\\n"}{end}';
const SVC_ROWS =
  '{range .items[*]}{.metadata.namespace}{"\\t"}{.metadata.name}{"\\t"}{.spec.clusterIP}{"\\t"}{range .spec.ports[*]}{.port}/{.protocol} {end}{"\\n"}{end}';

export async function readTopology(lab: Lab, access: LabAccess): Promise<LiveTopology> {
  const namespaces = [WORKLOAD_NAMESPACE, TOOLBOX.namespace, CLUSTER_DNS.namespace];
  const [pods, services, ...links] = await Promise.all([
    access.kubectl(["get", "pods", "-A", "-o", `jsonpath=${POD_ROWS}`], 20),
    access.kubectl(["get", "services", "-A", "-o", `jsonpath=${SVC_ROWS}`], 20),
    ...lab.nodes.map((n) => access.onNode(n.name, `ip -d -j link show ${lab.pods.flannel.device}`, 20)),
  ]);
  const live: LiveTopology = {};
  if (pods.exitCode === 0) {
    live.pods = parseRows(pods.stdout)
      .filter(([, ip, , hostNetwork]) => ip && hostNetwork !== "true")
      .map(([name, ip, node]) => ({ name, ip, node }));
  }
  if (services.exitCode === 0) {
    live.services = parseRows(services.stdout)
      .filter(([ns, , ip]) => namespaces.includes(ns) && ip && ip !== "None")
      .map(([namespace, name, clusterIP, ports]) => ({ namespace, name, clusterIP, ports: (ports ?? "").trim() }));
  }
  live.vtepMac = Object.fromEntries(
    lab.nodes.flatMap((n, i) => {
      const mac = links[i].exitCode === 0 ? parseVxlanLink(links[i].stdout)?.mac : undefined;
      return mac ? [[n.name, mac]] : [];
    }),
  );
  return live;
}

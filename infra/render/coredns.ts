// CoreDNS's Corefile from the lab: the cluster zone from the API, every other name answered at once.
import type { Lab } from "../../core/index.ts";

export const DNS_PORT = 53;
export const COREDNS_METRICS_PORT = 9153;
export const COREDNS_HEALTH_PORT = 8080;
export const COREDNS_READY_PORT = 8181;

/**
 * Two server blocks. The cluster zone and reverse zones are served from Services and Pods. Any
 * other name gets NXDOMAIN straight away: the lab is offline, and a forward to an upstream that
 * cannot answer would make every external lookup wait for its timeout.
 */
export function renderCorefile(lab: Lab): string {
  const zones = `${lab.services.clusterDomain} in-addr.arpa ip6.arpa`;
  return [
    `${zones} {`,
    "    errors",
    "    health {",
    "        lameduck 5s",
    "    }",
    "    ready",
    `    kubernetes ${zones} {`,
    "        pods insecure",
    "        ttl 30",
    "    }",
    `    prometheus :${COREDNS_METRICS_PORT}`,
    "    cache 30",
    "    loop",
    "    reload", // picks up an edited ConfigMap without a restart
    "    loadbalance",
    "}",
    ".:53 {",
    "    errors",
    "    template ANY ANY {",
    "        rcode NXDOMAIN",
    "    }",
    "}",
    "",
  ].join("\n");
}

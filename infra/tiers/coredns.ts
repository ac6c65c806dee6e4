// CoreDns: cluster DNS at the lab's dnsIP (the address kubelet writes into every pod's resolv.conf).
import * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import { CLUSTER_DNS, RESTRICTED } from "../../core/names.ts";
import { COREDNS_HEALTH_PORT, COREDNS_METRICS_PORT, COREDNS_READY_PORT, DNS_PORT, renderCorefile } from "../render/index.ts";
import { Tier, type TierArgs } from "../tier.ts";
import { ControlPlane } from "./control-plane.ts";

const { namespace: NS, labels: DNS_LABELS } = CLUSTER_DNS;

export class CoreDns extends Tier {
  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("CoreDns", name, args, opts);
    const { lab } = args;
    const o = this.childOpts({ provider: this.below(ControlPlane).k8s });
    const meta = { name: CLUSTER_DNS.deployment, namespace: NS };

    const sa = new k8s.core.v1.ServiceAccount("coredns", { metadata: meta }, o);
    // What the kubernetes plugin watches to answer for Services and Pods.
    const role = new k8s.rbac.v1.ClusterRole(
      "coredns",
      {
        metadata: { name: "system:coredns" },
        rules: [
          { apiGroups: [""], resources: ["endpoints", "services", "pods", "namespaces"], verbs: ["list", "watch"] },
          { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["list", "watch"] },
        ],
      },
      o,
    );
    new k8s.rbac.v1.ClusterRoleBinding(
      "coredns",
      {
        metadata: { name: "system:coredns" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role.metadata.name },
        subjects: [{ kind: "ServiceAccount", name: sa.metadata.name, namespace: NS }],
      },
      o,
    );
    const corefile = new k8s.core.v1.ConfigMap("coredns", { metadata: meta, data: { Corefile: renderCorefile(lab) } }, o);

    new k8s.apps.v1.Deployment(
      "coredns",
      {
        metadata: { ...meta, labels: DNS_LABELS },
        spec: {
          replicas: CLUSTER_DNS.replicas,
          selector: { matchLabels: DNS_LABELS },
          template: {
            metadata: { labels: DNS_LABELS },
            spec: {
              serviceAccountName: sa.metadata.name,
              priorityClassName: "system-cluster-critical",
              // CoreDNS must not ask itself: it answers from the API, never from resolv.conf.
              dnsPolicy: "Default",
              securityContext: RESTRICTED.pod(DNS_PORT < 1024),
              containers: [
                {
                  name: "coredns",
                  securityContext: RESTRICTED.container(),
                  image: this.imageRef(args, "coredns"),
                  imagePullPolicy: "Never",
                  args: ["-conf", "/etc/coredns/Corefile"],
                  ports: [
                    { name: "dns", containerPort: DNS_PORT, protocol: "UDP" },
                    { name: "dns-tcp", containerPort: DNS_PORT, protocol: "TCP" },
                    { name: "metrics", containerPort: COREDNS_METRICS_PORT, protocol: "TCP" },
                  ],
                  volumeMounts: [{ name: "config", mountPath: "/etc/coredns", readOnly: true }],
                  // Generous: emulated CPUs (TCG) make the first answers slow.
                  readinessProbe: { httpGet: { path: "/ready", port: COREDNS_READY_PORT }, periodSeconds: 5, timeoutSeconds: 5 },
                  livenessProbe: { httpGet: { path: "/health", port: COREDNS_HEALTH_PORT }, initialDelaySeconds: 60, timeoutSeconds: 10, failureThreshold: 5 },
                  resources: { requests: { cpu: "50m", memory: "40Mi" }, limits: { memory: "170Mi" } },
                },
              ],
              volumes: [{ name: "config", configMap: { name: corefile.metadata.name } }],
            },
          },
        },
      },
      o,
    );

    new k8s.core.v1.Service(
      CLUSTER_DNS.service,
      {
        metadata: { name: CLUSTER_DNS.service, namespace: NS, labels: DNS_LABELS },
        spec: {
          clusterIP: lab.services.dnsIP,
          selector: DNS_LABELS,
          ports: [
            { name: "dns", port: DNS_PORT, protocol: "UDP" },
            { name: "dns-tcp", port: DNS_PORT, protocol: "TCP" },
            { name: "metrics", port: COREDNS_METRICS_PORT, protocol: "TCP" },
          ],
        },
      },
      o,
    );
    this.registerOutputs({});
  }
}

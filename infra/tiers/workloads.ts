// Workloads: data-product (gRPC) and business-manager (HTTP, calling data-product by its Service
// name), each a Deployment whose pods learn who and where they are from the downward API.
import * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import { appLabels, CONTROL_PLANE_TAINT, headlessService, podSecurity, RESTRICTED, TOOLBOX, WORKLOAD_NAMESPACE } from "../../core/names.ts";
import { Tier, type TierArgs } from "../tier.ts";
import { ControlPlane } from "./control-plane.ts";

const NS = WORKLOAD_NAMESPACE;

/** POD_NAME, POD_IP, NODE_NAME: every reply names the pod, its IP and its node. */
const identityEnv = [
  { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
  { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
  { name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
];

export class Workloads extends Tier {
  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("Workloads", name, args, opts);
    const { dataProduct, businessManager } = args.lab.workloads;
    const provider = this.below(ControlPlane).k8s;
    const o = (...after: pulumi.Resource[]) => this.childOpts({ provider }, after);

    const deployment = (
      w: { name: string; replicas: number; port: number },
      env: k8s.types.input.core.v1.EnvVar[],
      probes: Partial<k8s.types.input.core.v1.Container>,
      dependsOn: pulumi.Resource[] = [],
    ) =>
      new k8s.apps.v1.Deployment(
        w.name,
        {
          metadata: { name: w.name, namespace: NS, labels: appLabels(w.name) },
          spec: {
            replicas: w.replicas,
            selector: { matchLabels: appLabels(w.name) },
            template: {
              metadata: { labels: appLabels(w.name) },
              spec: {
                // Spread the replicas over the nodes, so Service traffic crosses the VXLAN overlay.
                topologySpreadConstraints: [
                  { maxSkew: 1, topologyKey: "kubernetes.io/hostname", whenUnsatisfiable: "ScheduleAnyway", labelSelector: { matchLabels: appLabels(w.name) } },
                ],
                securityContext: RESTRICTED.pod(w.port < 1024),
                containers: [
                  {
                    name: w.name,
                    securityContext: RESTRICTED.container(),
                    image: this.imageRef(args, w.name),
                    imagePullPolicy: "Never",
                    env: [...identityEnv, { name: "PORT", value: String(w.port) }, ...env],
                    ports: [{ name: "serve", containerPort: w.port }],
                    ...probes,
                    resources: { requests: { cpu: "20m", memory: "48Mi" }, limits: { memory: "192Mi" } },
                    // The root is read-only; the gRPC code writes its .proto files to /tmp at start.
                    volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
                  },
                ],
                volumes: [{ name: "tmp", emptyDir: { medium: "Memory", sizeLimit: "16Mi" } }],
              },
            },
          },
        },
        o(...dependsOn),
      );

    // Probe timings are generous: Node.js runs 10x slower on emulated CPUs.
    const dp = deployment(dataProduct, [], {
      readinessProbe: { grpc: { port: dataProduct.port }, periodSeconds: 5, timeoutSeconds: 5 },
      livenessProbe: { grpc: { port: dataProduct.port }, initialDelaySeconds: 60, timeoutSeconds: 10, failureThreshold: 5 },
    });
    new k8s.core.v1.Service(
      dataProduct.name,
      {
        metadata: { name: dataProduct.name, namespace: NS, labels: appLabels(dataProduct.name) },
        spec: { selector: appLabels(dataProduct.name), ports: [{ name: "grpc", port: dataProduct.port, targetPort: "serve", appProtocol: "grpc" }] },
      },
      o(),
    );
    // Headless: DNS answers with every ready pod's IP instead of one ClusterIP (the DNS probe shows both).
    new k8s.core.v1.Service(
      headlessService(dataProduct.name),
      {
        metadata: { name: headlessService(dataProduct.name), namespace: NS, labels: appLabels(dataProduct.name) },
        spec: { clusterIP: "None", selector: appLabels(dataProduct.name), ports: [{ name: "grpc", port: dataProduct.port, targetPort: "serve" }] },
      },
      o(),
    );

    deployment(
      businessManager,
      [{ name: "DATA_PRODUCT_ADDR", value: `${dataProduct.name}:${dataProduct.port}` }],
      {
        readinessProbe: { httpGet: { path: "/readyz", port: "serve" }, periodSeconds: 5, timeoutSeconds: 5 },
        livenessProbe: { httpGet: { path: "/healthz", port: "serve" }, initialDelaySeconds: 60, timeoutSeconds: 10, failureThreshold: 5 },
      },
      [dp],
    );
    // A NodePort Service is a ClusterIP Service too: one object gives both paths the probes take.
    new k8s.core.v1.Service(
      businessManager.name,
      {
        metadata: { name: businessManager.name, namespace: NS, labels: appLabels(businessManager.name) },
        spec: {
          type: "NodePort",
          selector: appLabels(businessManager.name),
          ports: [{ name: "http", port: businessManager.port, targetPort: "serve", nodePort: businessManager.nodePort }],
        },
      },
      o(),
    );

    // The probes' vantage points: one toolbox pod per node (curl, dig, ip, ping, tcpdump), in a namespace of their own.
    // The workloads meet Pod Security "restricted" (RESTRICTED), and their namespace enforces it.
    new k8s.core.v1.NamespacePatch(NS, { metadata: { name: NS, labels: podSecurity("restricted") } }, o());
    // tcpdump in the toolbox needs NET_ADMIN and NET_RAW: "privileged", said outright.
    const probeNs = new k8s.core.v1.Namespace(TOOLBOX.namespace, { metadata: { name: TOOLBOX.namespace, labels: podSecurity("privileged") } }, o());
    new k8s.apps.v1.DaemonSet(
      TOOLBOX.daemonSet,
      {
        metadata: { name: TOOLBOX.daemonSet, namespace: TOOLBOX.namespace, labels: TOOLBOX.labels },
        spec: {
          selector: { matchLabels: TOOLBOX.labels },
          template: {
            metadata: { labels: TOOLBOX.labels },
            spec: {
              terminationGracePeriodSeconds: 1,
              // A vantage point on every node, control-plane-only ones too.
              tolerations: [{ key: CONTROL_PLANE_TAINT.key, operator: "Exists", effect: CONTROL_PLANE_TAINT.effect }],
              containers: [
                {
                  name: TOOLBOX.daemonSet,
                  image: this.imageRef(args, TOOLBOX.image),
                  imagePullPolicy: "Never",
                  // tcpdump inside the pod sees the pod's own eth0: capturing needs these capabilities.
                  securityContext: { capabilities: { add: ["NET_ADMIN", "NET_RAW"] } },
                  resources: { requests: { cpu: "10m", memory: "16Mi" } },
                },
              ],
            },
          },
        },
      },
      o(probeNs),
    );
    this.registerOutputs({});
  }
}

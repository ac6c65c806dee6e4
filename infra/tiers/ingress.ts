// Ingress: the NGINX Inc ingress controller on every node's own network (hostNetwork, port 80, as
// in the classic setup), its IngressClass, and the lab's Ingress: Host -> business-manager.
import * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import { INGRESS_CONTROLLER, podSecurity, WORKLOAD_NAMESPACE } from "../../core/names.ts";
import { Tier, type TierArgs } from "../tier.ts";
import { ControlPlane } from "./control-plane.ts";
import { Pki } from "./pki.ts";

/** What the controller looks for in an IngressClass's spec.controller. */
const CONTROLLER_NAME = "nginx.org/ingress-controller";
/** The controller's readiness endpoint (/nginx-ready), on the node's own network. */
export const INGRESS_READY_PORT = 8081;
/** The API version adapter beside the controller, on the node's loopback (workloads/ingress-adapter). */
export const INGRESS_ADAPTER_PORT = 18001;

export class Ingress extends Tier {
  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("Ingress", name, args, opts);
    const { lab } = args;
    const provider = this.below(ControlPlane).k8s;
    const o = (...after: pulumi.Resource[]) => this.childOpts({ provider }, after);
    const { namespace, name: controller, labels } = INGRESS_CONTROLLER;

    // hostNetwork: "privileged", said outright.
    const ns = new k8s.core.v1.Namespace(controller, { metadata: { name: namespace, labels: podSecurity("privileged") } }, o());
    const sa = new k8s.core.v1.ServiceAccount(controller, { metadata: { name: controller, namespace } }, o(ns));
    // The controller's RBAC (deployments/rbac/rbac.yaml of v1.12.5, less its custom resources), narrowed:
    // it watches only the workloads' namespace (-watch-namespace), so it reads Services, Endpoints and
    // Secrets there and nowhere else; its ConfigMap and events in its own namespace; IngressClasses.
    const grant = (id: string, where: string, rules: k8s.types.input.rbac.v1.PolicyRule[]) => {
      const r = new k8s.rbac.v1.Role(id, { metadata: { name: controller, namespace: where }, rules }, where === namespace ? o(ns) : o());
      new k8s.rbac.v1.RoleBinding(
        id,
        {
          metadata: { name: controller, namespace: where },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: r.metadata.name },
          subjects: [{ kind: "ServiceAccount", name: sa.metadata.name, namespace }],
        },
        o(r),
      );
    };
    const events: k8s.types.input.rbac.v1.PolicyRule = { apiGroups: [""], resources: ["events"], verbs: ["create", "patch", "list"] };
    grant(`${controller}-workloads`, WORKLOAD_NAMESPACE, [
      { apiGroups: [""], resources: ["services", "endpoints", "secrets"], verbs: ["get", "list", "watch"] },
      { apiGroups: [""], resources: ["pods"], verbs: ["list", "watch"] },
      events,
      { apiGroups: ["networking.k8s.io"], resources: ["ingresses"], verbs: ["list", "watch", "get"] },
      { apiGroups: ["networking.k8s.io"], resources: ["ingresses/status"], verbs: ["update"] },
    ]);
    grant(controller, namespace, [{ apiGroups: [""], resources: ["configmaps"], verbs: ["get", "list", "watch", "update", "create"] }, events]);
    const classes = new k8s.rbac.v1.ClusterRole(
      controller,
      { metadata: { name: controller }, rules: [{ apiGroups: ["networking.k8s.io"], resources: ["ingressclasses"], verbs: ["get"] }] },
      o(),
    );
    new k8s.rbac.v1.ClusterRoleBinding(
      controller,
      {
        metadata: { name: controller },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: classes.metadata.name },
        subjects: [{ kind: "ServiceAccount", name: sa.metadata.name, namespace }],
      },
      o(),
    );
    // The adapter's serving certificate (127.0.0.1, signed by the lab CA, which every pod trusts).
    const adapterCert = this.below(Pki).certs["ingress-adapter"];
    const adapterTls = new k8s.core.v1.Secret(
      "ingress-adapter-tls",
      {
        metadata: { name: "ingress-adapter-tls", namespace },
        type: "kubernetes.io/tls",
        stringData: { "tls.crt": adapterCert.certPem, "tls.key": adapterCert.keyPem },
      },
      o(ns),
    );
    const config = new k8s.core.v1.ConfigMap("nginx-config", { metadata: { name: "nginx-config", namespace }, data: {} }, o(ns));
    const ingressClass = new k8s.networking.v1.IngressClass("nginx", { metadata: { name: lab.ingress.className }, spec: { controller: CONTROLLER_NAME } }, o());

    new k8s.apps.v1.DaemonSet(
      controller,
      {
        metadata: { name: controller, namespace, labels },
        spec: {
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              serviceAccountName: sa.metadata.name,
              // nginx listens on the node's own port 80: the outside client reaches it at the node's LAN address.
              hostNetwork: lab.ingress.hostNetwork,
              dnsPolicy: "ClusterFirstWithHostNet",
              // v1.12.5 speaks networking.k8s.io/v1beta1, which Kubernetes 1.22 removed. It reaches the API
              // through the adapter (workloads/ingress-adapter), which translates to and from v1: a native
              // sidecar, started (and answering) before the controller.
              initContainers: [
                {
                  name: "api-adapter",
                  image: this.imageRef(args, "ingress-adapter"),
                  imagePullPolicy: "Never",
                  restartPolicy: "Always",
                  env: [
                    { name: "PORT", value: String(INGRESS_ADAPTER_PORT) },
                    { name: "TLS_CERT_FILE", value: "/etc/ingress-adapter/tls.crt" },
                    { name: "TLS_KEY_FILE", value: "/etc/ingress-adapter/tls.key" },
                  ],
                  volumeMounts: [{ name: "adapter-tls", mountPath: "/etc/ingress-adapter", readOnly: true }],
                  startupProbe: { tcpSocket: { host: "127.0.0.1", port: INGRESS_ADAPTER_PORT }, periodSeconds: 2, failureThreshold: 150 },
                },
              ],
              containers: [
                {
                  name: "controller",
                  image: this.imageRef(args, "nginx-ingress"),
                  imagePullPolicy: "Never",
                  args: [
                    `-nginx-configmaps=${namespace}/nginx-config`,
                    `-ingress-class=${lab.ingress.className}`,
                    `-watch-namespace=${WORKLOAD_NAMESPACE}`,
                    "-enable-custom-resources=false",
                    "-enable-leader-election=false",
                    "-nginx-status=false",
                    "-health-status",
                    `-ready-status-port=${INGRESS_READY_PORT}`,
                  ],
                  env: [
                    // In-cluster config, pointed at the adapter: the controller's own token authenticates it there.
                    { name: "KUBERNETES_SERVICE_HOST", value: "127.0.0.1" },
                    { name: "KUBERNETES_SERVICE_PORT", value: String(INGRESS_ADAPTER_PORT) },
                    { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
                    { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                  ],
                  ports: [
                    { name: "http", containerPort: 80 },
                    { name: "ready", containerPort: INGRESS_READY_PORT },
                  ],
                  readinessProbe: { httpGet: { path: "/nginx-ready", port: INGRESS_READY_PORT }, periodSeconds: 5, timeoutSeconds: 5 },
                },
              ],
              volumes: [{ name: "adapter-tls", secret: { secretName: adapterTls.metadata.name } }],
            },
          },
        },
      },
      o(ns, config, ingressClass, adapterTls),
    );

    new k8s.networking.v1.Ingress(
      "lab",
      {
        // The controller does not report an address (no load balancer: it is on the nodes' own port 80),
        // so Pulumi must not wait for one; the ingress probe proves the route instead.
        metadata: { name: lab.ingress.service, namespace: WORKLOAD_NAMESPACE, annotations: { "pulumi.com/skipAwait": "true" } },
        spec: {
          ingressClassName: ingressClass.metadata.name,
          rules: [
            {
              host: lab.ingress.host,
              http: {
                paths: [
                  { path: "/", pathType: "Prefix", backend: { service: { name: lab.ingress.service, port: { number: lab.workloads.businessManager.port } } } },
                ],
              },
            },
          ],
        },
      },
      o(),
    );
    this.registerOutputs({});
  }
}

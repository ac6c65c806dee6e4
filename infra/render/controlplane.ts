// kube-apiserver, kube-controller-manager and kube-scheduler on the control-plane node.
import type { Lab } from "../../core/index.ts";
import { API_SERVER_PORT, CA, caCert, configPath, ETCD_CLIENT_CERT, etcdEndpoint, kubeconfigPath, NODE_PATHS, pki } from "../../core/node.ts";
import { renderUnit } from "./systemd.ts";

/**
 * Anonymous requests are allowed only to the health endpoints; any other anonymous request is
 * refused with 401 before authorization runs.
 */
export function renderAuthenticationConfig(): string {
  return [
    "apiVersion: apiserver.config.k8s.io/v1",
    "kind: AuthenticationConfiguration",
    "anonymous:",
    "  enabled: true",
    "  conditions:",
    "    - path: /livez",
    "    - path: /readyz",
    "    - path: /healthz",
    "",
  ].join("\n");
}

export const AUDIT_LOG = "/var/log/kubernetes/audit.log";

/**
 * Every request's metadata (who, what, when, the answer), never a body: a Secret's content does not
 * land in the log. Lease renewals, a dozen a minute from every node and controller, are left out.
 */
export function renderAuditPolicy(): string {
  return [
    "apiVersion: audit.k8s.io/v1",
    "kind: Policy",
    "omitStages: [RequestReceived]",
    "rules:",
    "  - level: None",
    '    resources: [{ group: "coordination.k8s.io", resources: ["leases"] }]',
    "  - level: Metadata",
    "",
  ].join("\n");
}

export const ENCRYPTION_CONFIG = configPath("encryption-config.yaml");

/**
 * Secrets are stored in etcd encrypted with secretbox (XSalsa20-Poly1305). `identity` comes last so
 * a Secret written before encryption was on still reads; the next write of it encrypts it.
 */
export function renderEncryptionConfig(key: string): string {
  return [
    "apiVersion: apiserver.config.k8s.io/v1",
    "kind: EncryptionConfiguration",
    "resources:",
    "  - resources: [secrets]",
    "    providers:",
    "      - secretbox:",
    "          keys:",
    "            - name: key1",
    `              secret: ${key}`,
    "      - identity: {}",
    "",
  ].join("\n");
}

/** TLS 1.2 suites with forward secrecy and an AEAD cipher (TLS 1.3 picks its own): what the CIS benchmark accepts. */
export const TLS_CIPHER_SUITES = [
  "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
  "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
  "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
  "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
  "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
  "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
].join(",");

export function renderApiServerUnit(lab: Lab): string {
  return renderUnit({
    description: "kube-apiserver: the Kubernetes API, the only component that talks to etcd",
    documentation: "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/",
    after: ["etcd.service"],
    exec: [
      `${NODE_PATHS.bin}/kube-apiserver`,
      `--advertise-address=${lab.controlPlane.address}`,
      `--secure-port=${API_SERVER_PORT}`,
      `--etcd-servers=${etcdEndpoint(lab)}`,
      `--etcd-cafile=${caCert(CA.etcd)}`,
      `--etcd-certfile=${pki(`${ETCD_CLIENT_CERT.apiServer}.crt`)}`,
      `--etcd-keyfile=${pki(`${ETCD_CLIENT_CERT.apiServer}.key`)}`,
      `--service-cluster-ip-range=${lab.services.cidr}`,
      `--service-node-port-range=${lab.services.nodePortRange}`,
      "--authorization-mode=Node,RBAC",
      `--authentication-config=${configPath("authentication.yaml")}`,
      `--client-ca-file=${caCert(CA.kubernetes)}`,
      `--tls-cert-file=${pki("apiserver.crt")}`,
      `--tls-private-key-file=${pki("apiserver.key")}`,
      `--kubelet-certificate-authority=${caCert(CA.kubernetes)}`,
      `--kubelet-client-certificate=${pki("apiserver-kubelet-client.crt")}`,
      `--kubelet-client-key=${pki("apiserver-kubelet-client.key")}`,
      "--kubelet-preferred-address-types=InternalIP,Hostname",
      `--service-account-issuer=https://kubernetes.default.svc.${lab.services.clusterDomain}`,
      `--service-account-key-file=${pki("service-account.pub")}`,
      `--service-account-signing-key-file=${pki("service-account.key")}`,
      "--enable-admission-plugins=NodeRestriction",
      `--encryption-provider-config=${ENCRYPTION_CONFIG}`,
      // CIS 1.2: no profiling endpoint, TLS 1.2 at least with forward-secret AEAD suites only.
      "--profiling=false",
      // Who did what, without request bodies (CIS 1.2.16-19): rotated at 20 MiB, two old files kept, a week at most.
      `--audit-policy-file=${configPath("audit-policy.yaml")}`,
      `--audit-log-path=${AUDIT_LOG}`,
      "--audit-log-maxsize=20",
      "--audit-log-maxbackup=2",
      "--audit-log-maxage=7",
      "--tls-min-version=VersionTLS12",
      `--tls-cipher-suites=${TLS_CIPHER_SUITES}`,
      "--allow-privileged=true",
    ],
    service: ["LimitNOFILE=20000"],
    go: true,
  });
}

export function renderControllerManagerUnit(lab: Lab): string {
  return renderUnit({
    description: "kube-controller-manager: the control loops (Deployments, ReplicaSets, endpoints, node lifecycle)",
    documentation: "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-controller-manager/",
    after: ["kube-apiserver.service"],
    exec: [
      `${NODE_PATHS.bin}/kube-controller-manager`,
      `--kubeconfig=${kubeconfigPath("controller-manager")}`,
      `--authentication-kubeconfig=${kubeconfigPath("controller-manager")}`,
      `--authorization-kubeconfig=${kubeconfigPath("controller-manager")}`,
      `--cluster-cidr=${lab.pods.cidr}`,
      // flannel hands out node subnets (leases in etcd), so the controller-manager does not.
      "--allocate-node-cidrs=false",
      `--service-cluster-ip-range=${lab.services.cidr}`,
      `--root-ca-file=${caCert(CA.kubernetes)}`,
      `--service-account-private-key-file=${pki("service-account.key")}`,
      "--use-service-account-credentials=true",
      // One control plane: nothing to elect, and no lease renewals to miss under TCG.
      "--leader-elect=false",
      // Its health and metrics port answers on the node itself only; no profiling endpoint (CIS 1.3).
      "--bind-address=127.0.0.1",
      "--profiling=false",
    ],
    go: true,
  });
}

export function renderSchedulerConfig(): string {
  return [
    "apiVersion: kubescheduler.config.k8s.io/v1",
    "kind: KubeSchedulerConfiguration",
    "clientConnection:",
    `  kubeconfig: ${kubeconfigPath("scheduler")}`,
    "leaderElection:",
    "  leaderElect: false",
    "",
  ].join("\n");
}

export function renderSchedulerUnit(): string {
  return renderUnit({
    description: "kube-scheduler: picks a node for every new pod",
    documentation: "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-scheduler/",
    after: ["kube-apiserver.service"],
    exec: [
      `${NODE_PATHS.bin}/kube-scheduler`,
      `--config=${configPath("scheduler.yaml")}`,
      `--authentication-kubeconfig=${kubeconfigPath("scheduler")}`,
      `--authorization-kubeconfig=${kubeconfigPath("scheduler")}`,
      // Its health and metrics port answers on the node itself only; no profiling endpoint (CIS 1.4).
      "--bind-address=127.0.0.1",
      "--profiling=false",
    ],
    go: true,
  });
}

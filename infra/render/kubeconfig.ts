// Renders a kubeconfig: one cluster, one client certificate user, one context.
export interface KubeconfigSpec {
  clusterName: string;
  server: string;
  caCertPem: string;
  user: string;
  clientCertPem: string;
  clientKeyPem: string;
}

const b64 = (pem: string) => Buffer.from(pem).toString("base64");

export function renderKubeconfig(k: KubeconfigSpec): string {
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    `  - name: ${k.clusterName}`,
    "    cluster:",
    `      server: ${k.server}`,
    `      certificate-authority-data: ${b64(k.caCertPem)}`,
    "users:",
    `  - name: ${k.user}`,
    "    user:",
    `      client-certificate-data: ${b64(k.clientCertPem)}`,
    `      client-key-data: ${b64(k.clientKeyPem)}`,
    "contexts:",
    `  - name: ${k.user}@${k.clusterName}`,
    "    context:",
    `      cluster: ${k.clusterName}`,
    `      user: ${k.user}`,
    `current-context: ${k.user}@${k.clusterName}`,
    "",
  ].join("\n");
}

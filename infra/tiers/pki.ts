// Pki: the lab's two CAs (Kubernetes and etcd, as kubeadm has them), every certificate and key the
// cluster's parts present to each other, the service-account keys and the Secrets encryption key.
import * as pulumi from "@pulumi/pulumi";
import { apiServerURL, CA, type CaName, caCert, kubeconfigPath, pki } from "../../core/node.ts";
import { type CertSpec, certIdentity, certificateCatalog } from "../../scripts/pki/catalog.ts";
import type { KeyPairPem } from "../../scripts/pki/generate.ts";
import { Command } from "../provider/command.ts";
import { ENCRYPTION_CONFIG, type NodeFile, renderEncryptionConfig, renderKubeconfig } from "../render/index.ts";
import { Tier, type TierArgs } from "../tier.ts";
import { Machines } from "./machines.ts";
import { filesDigest, type NodeFileInput, nodeFiles } from "./remote.ts";

/** The kubeconfig each component on a node reads (as `unit`), and whose certificate it presents. */
function kubeconfigsFor(isControlPlane: boolean, nodeName: string): { who: string; cert: string; unit: string }[] {
  const everyNode = [
    { who: "kubelet", cert: `kubelet-${nodeName}`, unit: "kubelet" },
    { who: "kube-proxy", cert: "kube-proxy", unit: "kube-proxy" },
  ];
  return isControlPlane
    ? [
        ...everyNode,
        { who: "controller-manager", cert: "controller-manager", unit: "kube-controller-manager" },
        { who: "scheduler", cert: "scheduler", unit: "kube-scheduler" },
      ]
    : everyNode;
}

/** Who reads each CA's certificate: every client and server it signed for. */
const CA_READERS: Record<CaName, string[]> = {
  [CA.kubernetes]: ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"],
  [CA.etcd]: ["etcd", "kube-apiserver", "flanneld"],
};

/** Runs from the project root (Pulumi's working directory); a relative path keeps state free of checkout paths. */
const GENERATE = "node_modules/.bin/tsx scripts/pki.ts";

export interface IssuedCert {
  spec: CertSpec;
  certPem: pulumi.Output<string>;
  /** A Pulumi secret. */
  keyPem: pulumi.Output<string>;
}

type CredentialFile = NodeFileInput & { readBy: string[] };

export class Pki extends Tier {
  /** The Kubernetes CA's certificate (API server, kubelets, kubeconfigs). */
  readonly caCertPem: pulumi.Output<string>;
  readonly etcdCaCertPem: pulumi.Output<string>;
  readonly certs: Record<string, IssuedCert>;
  /** Per node: the step that put its certificates, keys and kubeconfigs in place (tiers above wait for it). */
  readonly nodeFiles: Record<string, Command> = {};
  private readonly credentialFiles: Record<string, CredentialFile[]> = {};

  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("Pki", name, args, opts);
    // Each key is made once, when its command is created; a later `up` reads it from state.
    const generate = <T>(id: string, kind: string, environment: Record<string, pulumi.Input<string>>, triggers: unknown[] = []) =>
      pulumi.secret(
        new Command(
          id,
          { create: `${GENERATE} ${kind}`, environment, triggers, logging: "none" },
          this.childOpts({ additionalSecretOutputs: ["stdout"] }),
        ).stdout.apply((out) => JSON.parse(out) as T),
      );

    const cas: Record<CaName, pulumi.Output<KeyPairPem>> = {
      [CA.kubernetes]: generate<KeyPairPem>("ca", "ca", { K8SLAB_CA_NAME: `k8slab ${args.lab.name} CA` }),
      [CA.etcd]: generate<KeyPairPem>("etcd-ca", "ca", { K8SLAB_CA_NAME: `k8slab ${args.lab.name} etcd CA` }),
    };
    this.caCertPem = pulumi.unsecret(cas[CA.kubernetes].certPem);
    this.etcdCaCertPem = pulumi.unsecret(cas[CA.etcd].certPem);
    this.certs = {};
    for (const spec of certificateCatalog(args.lab)) {
      const identity = JSON.stringify(certIdentity(spec));
      const issued = generate<KeyPairPem>(
        `cert-${spec.name}`,
        "issue",
        { K8SLAB_CERT_SPEC: identity, K8SLAB_CA_CERT: cas[spec.ca].certPem, K8SLAB_CA_KEY: cas[spec.ca].keyPem },
        // A renewal issues every leaf again (same names, new keys and dates); the CAs stay.
        args.certificatesRenewed ? [identity, args.certificatesRenewed] : [identity],
      );
      this.certs[spec.name] = { spec, certPem: pulumi.unsecret(issued.certPem), keyPem: issued.keyPem };
    }
    const sa = generate<{ publicKeyPem: string; privateKeyPem: string }>("service-account", "service-account", {});
    const encryption = generate<{ key: string }>("encryption-key", "encryption-key", {});

    // Each node gets both CA certificates, its own certificates and keys, and its components' kubeconfigs.
    const { lab } = args;
    const machines = this.below(Machines);
    for (const node of lab.nodes) {
      const files: CredentialFile[] = [
        { path: caCert(CA.kubernetes), content: this.caCertPem, readBy: CA_READERS[CA.kubernetes] },
        { path: caCert(CA.etcd), content: this.etcdCaCertPem, readBy: CA_READERS[CA.etcd] },
      ];
      for (const { spec, certPem, keyPem } of Object.values(this.certs).filter((c) => c.spec.nodes.includes(node.name))) {
        files.push(
          { path: pki(`${spec.name}.crt`), content: certPem, readBy: spec.readBy },
          { path: pki(`${spec.name}.key`), content: keyPem, mode: "0600", readBy: spec.readBy },
        );
      }
      if (node.isControlPlane) {
        const serviceAccountReaders = ["kube-apiserver", "kube-controller-manager"];
        files.push(
          { path: pki("service-account.pub"), content: pulumi.unsecret(sa.publicKeyPem), readBy: serviceAccountReaders },
          { path: pki("service-account.key"), content: sa.privateKeyPem, mode: "0600", readBy: serviceAccountReaders },
          { path: ENCRYPTION_CONFIG, content: encryption.key.apply(renderEncryptionConfig), mode: "0600", readBy: ["kube-apiserver"] },
        );
      }
      for (const { who, cert, unit } of kubeconfigsFor(node.isControlPlane, node.name)) {
        files.push({ path: kubeconfigPath(who), content: this.kubeconfig(lab.name, apiServerURL(lab), cert), mode: "0600", readBy: [unit] });
      }
      this.credentialFiles[node.name] = files;
      this.nodeFiles[node.name] = nodeFiles(`files-${node.name}`, machines.connections[node.name], files, this.childOpts());
    }
    this.registerOutputs({ caCertPem: this.caCertPem });
  }

  /**
   * What `unit` on `node` reads, its rendered files and its credentials, as one digest (not a secret:
   * a hash): a unit restarts when either changes, a renewed certificate included.
   */
  unitDigest(node: string, unit: string, files: NodeFile[]): pulumi.Output<string> {
    const read = [...files.filter((f) => f.readBy.includes(unit)), ...this.credentialFiles[node].filter((f) => f.readBy.includes(unit))];
    return pulumi.unsecret(
      pulumi.all(read.map((f) => f.content)).apply((contents) => filesDigest(read.map((f, i) => ({ path: f.path, content: contents[i] })))),
    );
  }

  /** A kubeconfig for `server` presenting certificate `cert` (a secret: it holds the key). */
  kubeconfig(clusterName: string, server: string, cert: string): pulumi.Output<string> {
    const issued = this.certs[cert];
    return pulumi.secret(
      pulumi
        .all([this.caCertPem, issued.certPem, issued.keyPem])
        .apply(([caCertPem, clientCertPem, clientKeyPem]) =>
          renderKubeconfig({ clusterName, server, caCertPem, user: issued.spec.commonName, clientCertPem, clientKeyPem }),
        ),
    );
  }
}

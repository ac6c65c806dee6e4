// Pki: the lab CA and every certificate and key the cluster's parts present to each other.
import * as pulumi from "@pulumi/pulumi";
import { apiServerURL, kubeconfigPath, pki } from "../../core/node.ts";
import { type CertSpec, certificateCatalog } from "../../scripts/pki/catalog.ts";
import type { KeyPairPem } from "../../scripts/pki/generate.ts";
import { Command } from "../provider/command.ts";
import { renderKubeconfig } from "../render/index.ts";
import { Tier, type TierArgs } from "../tier.ts";
import { Machines } from "./machines.ts";
import { type NodeFileInput, nodeFiles } from "./remote.ts";

/** The kubeconfig each component on a node reads, and whose certificate it presents. */
function kubeconfigsFor(isControlPlane: boolean, nodeName: string): { who: string; cert: string }[] {
  const everyNode = [
    { who: "kubelet", cert: `kubelet-${nodeName}` },
    { who: "kube-proxy", cert: "kube-proxy" },
  ];
  return isControlPlane ? [...everyNode, { who: "controller-manager", cert: "controller-manager" }, { who: "scheduler", cert: "scheduler" }] : everyNode;
}

/** Runs from the project root (Pulumi's working directory); a relative path keeps state free of checkout paths. */
const GENERATE = "node_modules/.bin/tsx scripts/pki.ts";

export interface IssuedCert {
  spec: CertSpec;
  certPem: pulumi.Output<string>;
  /** A Pulumi secret. */
  keyPem: pulumi.Output<string>;
}

export class Pki extends Tier {
  readonly caCertPem: pulumi.Output<string>;
  readonly certs: Record<string, IssuedCert>;
  readonly serviceAccount: { publicKeyPem: pulumi.Output<string>; privateKeyPem: pulumi.Output<string> };
  /** Per node: the step that put its certificates, keys and kubeconfigs in place (tiers above wait for it). */
  readonly nodeFiles: Record<string, Command> = {};

  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("Pki", name, args, opts);
    // Each key pair is made once, when its command is created; a later `up` reads it from state.
    const generate = <T>(id: string, kind: string, environment: Record<string, pulumi.Input<string>>, triggers: unknown[] = []) =>
      pulumi.secret(
        new Command(
          id,
          { create: `${GENERATE} ${kind}`, environment, triggers, logging: "none" },
          this.childOpts({ additionalSecretOutputs: ["stdout"] }),
        ).stdout.apply((out) => JSON.parse(out) as T),
      );

    const ca = generate<KeyPairPem>("ca", "ca", { K8SLAB_CA_NAME: `k8slab ${args.lab.name} CA` });
    this.caCertPem = pulumi.unsecret(ca.certPem);
    this.certs = {};
    for (const spec of certificateCatalog(args.lab)) {
      const issued = generate<KeyPairPem>(
        `cert-${spec.name}`,
        "issue",
        {
          K8SLAB_CERT_SPEC: JSON.stringify(spec),
          K8SLAB_CA_CERT: ca.certPem,
          K8SLAB_CA_KEY: ca.keyPem,
        },
        [JSON.stringify(spec)],
      );
      this.certs[spec.name] = { spec, certPem: pulumi.unsecret(issued.certPem), keyPem: issued.keyPem };
    }
    const sa = generate<{ publicKeyPem: string; privateKeyPem: string }>("service-account", "service-account", {});
    this.serviceAccount = { publicKeyPem: pulumi.unsecret(sa.publicKeyPem), privateKeyPem: sa.privateKeyPem };

    // Each node gets the CA, its own certificates and keys, and its components' kubeconfigs.
    const { lab } = args;
    const machines = this.below(Machines);
    for (const node of lab.nodes) {
      const files: NodeFileInput[] = [{ path: pki("ca.crt"), content: this.caCertPem }];
      for (const { spec, certPem, keyPem } of Object.values(this.certs).filter((c) => c.spec.nodes.includes(node.name))) {
        files.push({ path: pki(`${spec.name}.crt`), content: certPem }, { path: pki(`${spec.name}.key`), content: keyPem, mode: "0600" });
      }
      if (node.isControlPlane) {
        files.push(
          { path: pki("service-account.pub"), content: this.serviceAccount.publicKeyPem },
          { path: pki("service-account.key"), content: this.serviceAccount.privateKeyPem, mode: "0600" },
        );
      }
      for (const { who, cert } of kubeconfigsFor(node.isControlPlane, node.name)) {
        files.push({ path: kubeconfigPath(who), content: this.kubeconfig(lab.name, apiServerURL(lab), cert), mode: "0600" });
      }
      this.nodeFiles[node.name] = nodeFiles(`files-${node.name}`, machines.connections[node.name], files, this.childOpts());
    }
    this.registerOutputs({ caCertPem: this.caCertPem });
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

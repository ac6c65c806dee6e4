// Pki: the lab CA and every certificate and key the cluster's parts present to each other.
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { certificateCatalog, type CertSpec } from "../pki/catalog.js";
import type { KeyPairPem } from "../pki/generate.js";
import { Tier, type TierArgs } from "../tier.js";

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

  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("Pki", name, args, opts);
    // Each key pair is made once, when its command is created; a later `up` reads it from state.
    const generate = <T>(id: string, kind: string, environment: Record<string, pulumi.Input<string>>, triggers: unknown[] = []) =>
      pulumi.secret(
        new command.local.Command(
          id,
          { create: `${GENERATE} ${kind}`, environment, triggers, logging: "none" },
          this.childOpts({ additionalSecretOutputs: ["stdout"] }),
        ).stdout.apply((out) => JSON.parse(out) as T),
      );

    const ca = generate<KeyPairPem>("ca", "ca", { K8SLAB_CA_NAME: `k8slab ${args.lab.name} CA` });
    this.caCertPem = pulumi.unsecret(ca.certPem);
    this.certs = {};
    for (const spec of certificateCatalog(args.lab)) {
      const issued = generate<KeyPairPem>(`cert-${spec.name}`, "issue", {
        K8SLAB_CERT_SPEC: JSON.stringify(spec),
        K8SLAB_CA_CERT: ca.certPem,
        K8SLAB_CA_KEY: ca.keyPem,
      }, [JSON.stringify(spec)]);
      this.certs[spec.name] = { spec, certPem: pulumi.unsecret(issued.certPem), keyPem: issued.keyPem };
    }
    const sa = generate<{ publicKeyPem: string; privateKeyPem: string }>("service-account", "service-account", {});
    this.serviceAccount = { publicKeyPem: pulumi.unsecret(sa.publicKeyPem), privateKeyPem: sa.privateKeyPem };
    this.registerOutputs({ caCertPem: this.caCertPem });
  }
}

// Prints one generated key pair as JSON on stdout; the Pki tier runs it once per certificate through local.Command.
//   pki.ts ca               env K8SLAB_CA_NAME
//   pki.ts issue            env K8SLAB_CERT_SPEC (a CertIdentity as JSON), K8SLAB_CA_CERT, K8SLAB_CA_KEY
//   pki.ts service-account
//   pki.ts encryption-key
import { EXIT } from "../core/exit.ts";
import { createCa, createEncryptionKey, createServiceAccountKeys, issueCertificate } from "./pki/generate.ts";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`pki.ts: ${name} is not set`);
  return value;
}

const kind = process.argv[2];
const result =
  kind === "ca"
    ? await createCa(env("K8SLAB_CA_NAME"))
    : kind === "issue"
      ? await issueCertificate({ certPem: env("K8SLAB_CA_CERT"), keyPem: env("K8SLAB_CA_KEY") }, JSON.parse(env("K8SLAB_CERT_SPEC")))
      : kind === "service-account"
        ? await createServiceAccountKeys()
        : kind === "encryption-key"
          ? createEncryptionKey()
          : undefined;
if (!result) {
  console.error("usage: pki.ts ca | issue | service-account | encryption-key");
  process.exit(EXIT.invalid);
}
process.stdout.write(JSON.stringify(result));

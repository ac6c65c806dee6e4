// Prints one generated key pair as JSON on stdout; the Pki tier runs it once per certificate through local.Command.
//   pki.ts ca               env K8SLAB_CA_NAME
//   pki.ts issue            env K8SLAB_CERT_SPEC (a CertSpec as JSON), K8SLAB_CA_CERT, K8SLAB_CA_KEY
//   pki.ts service-account
import { EXIT } from "../core/exit.ts";
import { createCa, createServiceAccountKeys, issueCertificate } from "./pki/generate.ts";

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
        : undefined;
if (!result) {
  console.error("usage: pki.ts ca | issue | service-account");
  process.exit(EXIT.invalid);
}
process.stdout.write(JSON.stringify(result));

// Creates the lab CA, certificates signed by it, and the service-account key pair (ECDSA P-256, PEM).
import "reflect-metadata"; // @peculiar/x509's dependency injection needs the Reflect API
import { randomBytes } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { type CertIdentity, LEAF_VALID_DAYS } from "./catalog.ts";

const webcrypto = globalThis.crypto;
x509.cryptoProvider.set(webcrypto);

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;

export interface KeyPairPem {
  certPem: string;
  keyPem: string;
}

const newKeys = () => webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
// A positive 16-byte serial: the high bit cleared so DER does not read it as negative.
const serial = () => (randomBytes(16)[0] & 0x7f).toString(16).padStart(2, "0") + randomBytes(15).toString("hex");

/** PEM text ending in a newline, as files on the nodes should. */
const pem = (der: ArrayBuffer, label: string) => `${x509.PemConverter.encode(der, label).trimEnd()}\n`;

async function privateKeyPem(key: CryptoKey): Promise<string> {
  return pem(await webcrypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

async function importPrivateKey(pem: string): Promise<CryptoKey> {
  return webcrypto.subtle.importKey("pkcs8", x509.PemConverter.decodeFirst(pem), ALGORITHM, false, ["sign"]);
}

export async function createCa(commonName: string, validDays = 3650): Promise<KeyPairPem> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}`,
    notBefore: new Date(Date.now() - DAY_MS),
    notAfter: new Date(Date.now() + validDays * DAY_MS),
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: pem(cert.rawData, "CERTIFICATE"), keyPem: await privateKeyPem(keys.privateKey) };
}

export async function issueCertificate(ca: KeyPairPem, spec: CertIdentity, validDays = LEAF_VALID_DAYS): Promise<KeyPairPem> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const keys = await newKeys();
  const subject = [`CN=${spec.commonName}`, ...(spec.organization ? [`O=${spec.organization}`] : [])].join(", ");
  const extendedUsages = spec.usages.map((u) => (u === "server" ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth));
  const names = [...spec.dns.map((value) => ({ type: "dns" as const, value })), ...spec.ips.map((value) => ({ type: "ip" as const, value }))];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject,
    issuer: caCert.subject,
    notBefore: new Date(Date.now() - DAY_MS),
    notAfter: new Date(Date.now() + validDays * DAY_MS),
    signingKey: await importPrivateKey(ca.keyPem),
    publicKey: keys.publicKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension(extendedUsages),
      ...(names.length ? [new x509.SubjectAlternativeNameExtension(names)] : []),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return { certPem: pem(cert.rawData, "CERTIFICATE"), keyPem: await privateKeyPem(keys.privateKey) };
}

/** The key pair the API server verifies service-account tokens with, and the controller-manager signs them with. */
export async function createServiceAccountKeys(): Promise<{ publicKeyPem: string; privateKeyPem: string }> {
  const keys = await newKeys();
  const spki = await webcrypto.subtle.exportKey("spki", keys.publicKey);
  return { publicKeyPem: pem(spki, "PUBLIC KEY"), privateKeyPem: await privateKeyPem(keys.privateKey) };
}

/** The key the API server encrypts Secrets in etcd with (secretbox: 32 random bytes, base64). */
export function createEncryptionKey(): { key: string } {
  return { key: randomBytes(32).toString("base64") };
}

// When each of a lab's certificates expires, read from where it is used: every .crt on each running
// node, and the host's kubeconfigs (admin, break-glass). `k8slab status` shows the first to expire;
// `k8slab certs` lists them all and `--renew` issues every leaf again (lifecycle.ts).
import { X509Certificate } from "node:crypto";
import fs from "node:fs";
import yaml from "js-yaml";
import type { Lab } from "../../core/index.ts";
import { NODE_PATHS } from "../../core/node.ts";
import { labPaths } from "../../core/paths.ts";
import { labStatus } from "../machines/lab.ts";
import type { SshEndpoint } from "../machines/spec.ts";
import { sshRun } from "../machines/ssh.ts";

export interface CertExpiry {
  /** A node's name, or "host". */
  where: string;
  /** The file (a node's .crt, or the host's kubeconfig). */
  file: string;
  subject: string;
  issuer: string;
  notAfter: string;
  daysLeft: number;
  isCa: boolean;
}

const DAY_MS = 86_400_000;
/** Below this many days, status says so: time to `k8slab certs --renew`. */
export const RENEW_WITHIN_DAYS = 30;

function expiryOf(where: string, file: string, pem: string, now: number): CertExpiry {
  const cert = new X509Certificate(pem);
  const notAfter = new Date(cert.validTo);
  return {
    where,
    file,
    subject: cert.subject.replaceAll("\n", ", "),
    issuer: cert.issuer.replaceAll("\n", ", "),
    notAfter: notAfter.toISOString(),
    daysLeft: Math.floor((notAfter.getTime() - now) / DAY_MS),
    isCa: cert.ca,
  };
}

/** The output of NODE_CERTS_COMMAND: "== <path>" then that file's PEM, for each file. */
export function parseNodeCerts(where: string, dump: string, now = Date.now()): CertExpiry[] {
  return dump
    .split(/^== /m)
    .filter((part) => part.includes("-----BEGIN CERTIFICATE-----"))
    .map((part) => {
      const [file, ...pem] = part.split("\n");
      return expiryOf(where, file.trim(), pem.join("\n"), now);
    });
}

export const NODE_CERTS_COMMAND = `for f in ${NODE_PATHS.pki}/*.crt; do echo "== $f"; cat "$f"; done`;

/** A kubeconfig's client certificate. */
export function kubeconfigCert(where: string, file: string, text: string, now = Date.now()): CertExpiry | undefined {
  const doc = yaml.load(text) as { users?: { user?: { "client-certificate-data"?: string } }[] } | undefined;
  const data = doc?.users?.[0]?.user?.["client-certificate-data"];
  return data ? expiryOf(where, file, Buffer.from(data, "base64").toString("utf8"), now) : undefined;
}

/** Every certificate of the lab that can be read now; a node that is not running is skipped (and named). */
export async function labCertificates(lab: Lab): Promise<{ certs: CertExpiry[]; unread: string[] }> {
  const running = (await labStatus(lab.name)).nodes.filter((n) => n.running && n.ssh);
  const unread = lab.nodes.map((n) => n.name).filter((n) => !running.some((r) => r.name === n));
  const perNode = await Promise.all(
    running.map(async (n) => {
      try {
        return parseNodeCerts(n.name, await sshRun(n.ssh as SshEndpoint, NODE_CERTS_COMMAND));
      } catch {
        unread.push(n.name);
        return [];
      }
    }),
  );
  const paths = labPaths(lab.name);
  const host = [paths.adminKubeconfig, paths.superAdminKubeconfig]
    .filter((f) => fs.existsSync(f))
    .map((f) => kubeconfigCert("host", f, fs.readFileSync(f, "utf8")))
    .filter((c): c is CertExpiry => c !== undefined);
  return { certs: [...perNode.flat(), ...host], unread };
}

/** The leaf certificate that expires first (the CAs last ten years and are not renewed). */
export const firstToExpire = (certs: CertExpiry[]) => certs.filter((c) => !c.isCa).sort((a, b) => a.notAfter.localeCompare(b.notAfter))[0];

export function renderCertificates(certs: CertExpiry[], unread: string[]): string {
  const lines = certs
    .slice()
    .sort((a, b) => a.where.localeCompare(b.where) || a.file.localeCompare(b.file))
    .map(
      (c) =>
        `  ${c.where.padEnd(8)} ${c.file.replace(`${NODE_PATHS.pki}/`, "").padEnd(28)} ${c.notAfter.slice(0, 10)} (${c.daysLeft} days)${c.isCa ? " CA" : ""}  ${c.subject}`,
    );
  if (unread.length) lines.push(`  not read (not running): ${unread.join(", ")}`);
  return `${lines.join("\n")}\n`;
}

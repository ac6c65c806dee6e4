// The remote steps every cluster tier is made of: put files on a node, run systemd units there.
// Remote commands only copy and start; what the files say is rendered in infra/render/.
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { Command, type SshEndpoint } from "../provider/command.ts";
import type { NodeFile } from "../render/index.ts";

export interface NodeFileInput {
  path: string;
  content: pulumi.Input<string>;
  /** Octal mode; keys get 0600. */
  mode?: string;
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

/**
 * A bash script that writes each file atomically (base64, so any content survives the trip),
 * created with no permission for others (umask 077) and given its mode before it is moved into
 * place: a key is never readable by anyone else, not even for a moment.
 */
export function installScript(files: { path: string; content: string; mode?: string }[]): string {
  return `${files
    .map((f) =>
      [
        `install -d -m 0755 "$(dirname ${f.path})"`,
        `(umask 077 && base64 -d > ${f.path}.k8slab-new) <<'EOF'`,
        b64(f.content),
        "EOF",
        `chmod ${f.mode ?? "0644"} ${f.path}.k8slab-new && mv ${f.path}.k8slab-new ${f.path}`,
      ].join("\n"),
    )
    .join("\n")}\n`;
}

/**
 * Writes files on a node; a changed content rewrites them, delete removes them. The script
 * travels on stdin, a secret as a whole when any file is one (keys), so state stays encrypted.
 */
export function nodeFiles(name: string, connection: pulumi.Input<SshEndpoint>, files: NodeFileInput[], opts: pulumi.CustomResourceOptions): Command {
  const script = pulumi.all(files.map((f) => f.content)).apply((contents) => installScript(files.map((f, i) => ({ ...f, content: contents[i] }))));
  return new Command(
    name,
    {
      connection,
      create: "bash",
      stdin: script,
      delete: `rm -f ${files.map((f) => f.path).join(" ")}`,
      logging: "none",
    },
    opts,
  );
}

/**
 * Enables and starts units (daemon-reload first); a change of `configDigest` (the hash of the
 * files the units read) restarts them; delete stops and disables them. `ready` is a shell
 * check run until it passes or `readyTimeoutSec` ends: the tier above starts on a working layer.
 */
export function nodeUnits(
  name: string,
  connection: pulumi.Input<SshEndpoint>,
  units: string[],
  opts: pulumi.CustomResourceOptions,
  check?: { ready: string; what: string; readyTimeoutSec?: number; configDigest?: pulumi.Input<string> },
): Command {
  const list = units.join(" ");
  const wait = check ? `\n${waitFor(check.ready, check.what, check.readyTimeoutSec ?? 300)}` : "";
  return new Command(
    name,
    {
      connection,
      create: `systemctl daemon-reload\nsystemctl enable ${list}\nsystemctl restart ${list}${wait}`,
      delete: `systemctl disable --now ${list} || true`,
      environment: check?.configDigest ? { K8SLAB_CONFIG_SHA256: check.configDigest } : undefined,
      timeoutSec: (check?.readyTimeoutSec ?? 300) + 120,
    },
    opts,
  );
}

/** A polling loop that ends in a clear failure naming what never became ready. */
export function waitFor(ready: string, what: string, timeoutSec: number): string {
  return [
    `deadline=$((SECONDS + ${timeoutSec}))`,
    `until ${ready}; do`,
    `  if [ $SECONDS -ge $deadline ]; then echo "not ready after ${timeoutSec} s: ${what}" >&2; exit 1; fi`,
    "  sleep 2",
    "done",
  ].join("\n");
}

/** What a set of rendered files says, as one digest. */
export const filesDigest = (files: { path: string; content: string }[]) =>
  createHash("sha256")
    .update(JSON.stringify(files.map(({ path, content }) => ({ path, content }))))
    .digest("hex");

/** What the files `unit` reads say, as one digest: the unit restarts when, and only when, it changes. */
export const unitDigest = (files: NodeFile[], unit: string) => filesDigest(files.filter((f) => f.readBy.includes(unit)));

// The provider behind k8slab:index:Command: diff, create, update and delete, each running bash
// here or over SSH. Pure parts (diff, argv) are exported for the unit tests.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type * as provider from "@pulumi/pulumi/provider/index.js";
import { shq } from "../../core/shell.ts";
import { sshArgv } from "../../scripts/machines/ssh.ts";
import type { SshEndpoint } from "./command.ts";

/** Local commands run from the project root, as they would from `pulumi up` there. */
export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** What the provider runs with: the resource's inputs, secrets unwrapped. */
export interface CommandInputs {
  connection?: SshEndpoint;
  create: string;
  update?: string;
  delete?: string;
  environment?: Record<string, string>;
  stdin?: string;
  triggers?: unknown[];
  timeoutSec?: number;
  logging?: "all" | "none";
}

/** Pulumi's wire form of a secret; the engine sends these because the provider accepts secrets. */
const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270";

export function unwrapSecrets(v: any): any {
  if (Array.isArray(v)) return v.map(unwrapSecrets);
  if (v && typeof v === "object") {
    if (v[SECRET_SIG] === SECRET_VALUE) return unwrapSecrets(v.value);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x)]));
  }
  return v;
}

const INPUT_KEYS = ["connection", "create", "update", "delete", "environment", "stdin", "triggers", "timeoutSec", "logging"] as const;
/** A change to these means a different thing on a different place: replace, never update. */
const REPLACING_KEYS = new Set<string>(["triggers", "connection"]);

const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

export function diffCommand(olds: Record<string, unknown>, news: Record<string, unknown>): provider.DiffResult {
  const changed = INPUT_KEYS.filter((k) => !same(unwrapSecrets(olds[k]), unwrapSecrets(news[k])));
  return { changes: changed.length > 0, replaces: changed.filter((k) => REPLACING_KEYS.has(k)) };
}

/** The script as bash runs it: strict mode, environment exported first (sshd passes no variables). */
export function scriptFor(command: string, environment: Record<string, string> = {}): string {
  const exports = Object.entries(environment)
    .map(([k, v]) => `export ${k}=${shq(v)}\n`)
    .join("");
  return `set -euo pipefail\n${exports}${command}`;
}

/** argv that runs the script here, or on the node through ssh (the remote login shell starts bash). */
export function commandArgv(script: string, connection?: SshEndpoint): string[] {
  if (!connection) return ["bash", "-c", script];
  return sshArgv(connection, `bash -c ${shq(script)}`);
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function runOnce(argv: string[], stdin: string | undefined, timeoutSec: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { cwd: projectRoot, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutSec * 1000);
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
    child.stdin.on("error", () => undefined); // a command that ignores its stdin closes the pipe early
    child.stdin.end(stdin ?? "");
  });
}

/** ssh's own failures (exit 255): the node is still booting or busy under TCG; worth waiting for. */
const SSH_RETRY_SECONDS = 180;

export async function runCommand(command: string, inputs: CommandInputs): Promise<RunResult> {
  const argv = commandArgv(scriptFor(command, inputs.environment), inputs.connection);
  const timeoutSec = inputs.timeoutSec ?? 600;
  const started = Date.now();
  for (let delay = 1000; ; delay = Math.min(delay * 2, 10_000)) {
    const r = await runOnce(argv, inputs.stdin, timeoutSec);
    const sshFailed = inputs.connection && r.code === 255 && !/Host key verification failed|Permission denied/.test(r.stderr);
    if (!sshFailed || Date.now() - started > SSH_RETRY_SECONDS * 1000) return r;
    await new Promise((res) => setTimeout(res, delay));
  }
}

/** The error a failed run becomes: where, which step, the exit, and the output's tail unless hidden. */
export function commandError(step: string, command: string, inputs: CommandInputs, r: RunResult): Error {
  const where = inputs.connection ? `${inputs.connection.user}@${inputs.connection.host}:${inputs.connection.port}` : "this machine";
  const what = r.timedOut ? `timed out after ${inputs.timeoutSec ?? 600} s` : `exited ${r.code}`;
  const firstLine = command.trim().split("\n")[0];
  const tail = (s: string) => s.trimEnd().split("\n").slice(-15).join("\n");
  const output = inputs.logging === "none" ? "(output hidden: logging none)" : [tail(r.stderr), tail(r.stdout)].filter(Boolean).join("\n");
  return new Error(`${step} on ${where} ${what}: ${firstLine}\n${output}`);
}

async function run(step: string, command: string, props: any): Promise<{ stdout: string; stderr: string }> {
  const inputs = unwrapSecrets(props) as CommandInputs;
  const r = await runCommand(command, inputs);
  if (r.code !== 0) throw commandError(step, command, inputs, r);
  return { stdout: r.stdout, stderr: r.stderr };
}

/** Outputs keep the inputs as sent (secrets stay wrapped, so they stay secret in state) plus the output. */
const keepInputs = (props: any) => Object.fromEntries(INPUT_KEYS.filter((k) => props[k] !== undefined).map((k) => [k, props[k]]));

export const commandProvider: provider.Provider = {
  version: "0.1.0",
  async diff(_id, _urn, olds, news) {
    return diffCommand(olds, news);
  },
  async create(_urn, inputs) {
    const out = await run("create", unwrapSecrets(inputs.create), inputs);
    return { id: randomBytes(8).toString("hex"), outs: { ...keepInputs(inputs), ...out } };
  },
  async update(_id, _urn, _olds, news) {
    const out = await run("update", unwrapSecrets(news.update ?? news.create), news);
    return { outs: { ...keepInputs(news), ...out } };
  },
  async delete(_id, _urn, props) {
    if (props.delete) await run("delete", unwrapSecrets(props.delete), props);
  },
};

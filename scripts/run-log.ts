// A lifecycle command's whole output kept in the lab's log folder, and what Pulumi says failed, by resource.
import fs from "node:fs";
import path from "node:path";
import type { EngineEvent } from "@pulumi/pulumi/automation/index.js";

/** Where a run's output goes: the lab's log folder, one file per run, named by command and start time. */
export const runLogFile = (logsDir: string, command: string, at = new Date()) => path.join(logsDir, `${command}-${at.toISOString().replace(/[:.]/g, "-")}.log`);

/** Names the file the project's provider plugin writes its own life to (infra/provider/main.ts): `up` sets it to its log. */
export const PLUGIN_LOG_ENV = "K8SLAB_PLUGIN_LOG";

export interface RunLog {
  file: string;
  /** Text that goes to the log only (Pulumi's own stderr: its plugins' output, its engine log). */
  write(text: string): void;
  close(): void;
}

/**
 * Copies everything this process writes to stdout and stderr into `file`, from now until `close`.
 * The terminal sees what it saw before; the file sees it too, so a failed run can be read afterwards.
 */
export function teeOutput(file: string): RunLog {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const fd = fs.openSync(file, "a", 0o600);
  const append = (chunk: unknown) => {
    try {
      fs.writeSync(fd, typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Uint8Array));
    } catch {
      // a full disk must not stop the run it records
    }
  };
  const streams = [process.stdout, process.stderr];
  const originals = streams.map((s) => s.write);
  for (const [i, s] of streams.entries()) {
    const original = originals[i];
    s.write = ((chunk: unknown, ...rest: unknown[]) => {
      append(chunk);
      return (original as (...a: unknown[]) => boolean).call(s, chunk, ...rest);
    }) as typeof s.write;
  }
  let open = true;
  return {
    file,
    write: (text) => open && append(text),
    close() {
      if (!open) return;
      open = false;
      for (const [i, s] of streams.entries()) s.write = originals[i];
      fs.closeSync(fd);
    },
  };
}

/** One resource's own error, as the engine reported it. */
export interface ResourceFailure {
  /** `type name`, e.g. `k8slab:index:Command etcd-node1`; `pulumi` for an error of the engine itself. */
  resource: string;
  error: string;
}

/** `urn:pulumi:stack::project::parent$type::name` -> `type name`. */
export function resourceOfUrn(urn: string): string {
  const parts = urn.split("::");
  const name = parts.at(-1) ?? urn;
  const type = (parts.at(-2) ?? "").split("$").at(-1) ?? "";
  return type ? `${type} ${name}` : name;
}

/** Collects every error diagnostic of a Pulumi run, by resource, in the order they came. */
export function pulumiFailures(): { onEvent: (e: EngineEvent) => void; failures: () => ResourceFailure[] } {
  const seen: ResourceFailure[] = [];
  return {
    onEvent(e) {
      const d = e.diagnosticEvent;
      if (d?.severity !== "error") return;
      const failure = { resource: d.urn ? resourceOfUrn(d.urn) : "pulumi", error: d.message.trim() };
      if (!seen.some((f) => f.resource === failure.resource && f.error === failure.error)) seen.push(failure);
    },
    failures: () => seen,
  };
}

/** Each failed resource with its error (first lines; one line for many with the same error). `up` then names the log, once. */
export function failureLines(failures: ResourceFailure[], maxErrorLines = 6): string[] {
  const byError = new Map<string, string[]>();
  for (const f of failures) byError.set(f.error, [...(byError.get(f.error) ?? []), f.resource]);
  const lines: string[] = [];
  for (const [text, resources] of byError) {
    const error = text.split("\n");
    const shown = error.slice(0, maxErrorLines).map((l, i) => (i === 0 ? l : `      ${l}`));
    if (error.length > maxErrorLines) shown.push(`      (${error.length - maxErrorLines} more lines in the log)`);
    const who =
      resources.length === 1 ? resources[0] : `${resources.length} resources (${resources.slice(0, 3).join(", ")}${resources.length > 3 ? ", ..." : ""})`;
    lines.push(`  failed: ${who}: ${shown.join("\n")}`);
  }
  return lines;
}

/**
 * Pulumi's two streams for a run: its stdout to the terminal (and so the log), its stderr (each
 * plugin's own output, which the engine passes on) to the log only. `K8SLAB_PULUMI_VERBOSE=N` adds
 * the engine's and plugins' own logs at verbosity N to the log, for a failure that needs them.
 */
export function pulumiLogged(log: RunLog) {
  const verbosity = Number(process.env.K8SLAB_PULUMI_VERBOSE);
  return {
    onOutput: (out: string) => process.stderr.write(out),
    onError: (err: string) => log.write(err),
    ...(verbosity > 0 ? { logVerbosity: verbosity, logFlow: true, logToStdErr: true } : {}),
  };
}

/** A failed Pulumi run in one line: its failed resources are listed apart, else the engine's last error line. */
export function pulumiErrorLine(err: Error, failures: ResourceFailure[]): string {
  if (failures.some((f) => f.resource !== "pulumi")) {
    const n = failures.filter((f) => f.resource !== "pulumi").length;
    return `${n} resource${n === 1 ? "" : "s"} failed (below)`;
  }
  const stderr = (err as { commandResult?: { stderr?: string } }).commandResult?.stderr ?? err.message;
  const errors = stderr.split("\n").filter((l) => /^\s*error:/.test(l));
  return (errors.at(-1) ?? stderr.trim().split("\n").at(-1) ?? err.message).trim();
}

/**
 * Every failed cluster object was "unreachable" (on its refresh, or as the first object made) and nothing else failed: the Kubernetes provider found the
 * API server too slow to answer (it gives up on the OpenAPI document after 32 s), not a fault of the objects.
 */
export function apiServerTooSlow(failures: ResourceFailure[]): boolean {
  const objects = failures.filter((f) => f.resource !== "pulumi");
  return objects.length > 0 && objects.every((f) => f.resource.startsWith("kubernetes:") && /unreachable cluster|cluster is unreachable/.test(f.error));
}

// Several commands in one shell, one after another, each answered as its own Exec: every ssh session
// and process start costs on emulated CPUs (a `date` takes ~0.2 s there), so a probe pays for one
// session per node or pod, not per read, and the script around the commands uses bash builtins only.
import type { Exec } from "./types.ts";

/** Marks each step's records in the combined output; ASCII RS never appears in what the probes read. */
const STEP = "\x1ek8slab-step";
const END = "\x1ek8slab-end";

/**
 * A bash script (the live access runs every command with bash): per step, a start mark on stdout and on stderr, the command in a subshell
 * (so `exit` ends only the step), then an end mark on stdout with its exit code and milliseconds.
 */
export function stepsScript(commands: readonly string[]): string {
  const now = "${EPOCHREALTIME/[.,]/}"; // microseconds, a bash variable: no process to start
  return commands
    .map((command, i) =>
      [
        `s=${now}; printf '${STEP} ${i}\\n'; printf '${STEP} ${i}\\n' >&2`,
        `( ${command}\n)`,
        `rc=$?; printf '${END} ${i} %d %d\\n' "$rc" $(( (${now} - s) / 1000 ))`,
      ].join("\n"),
    )
    .join("\n");
}

/**
 * The batch's output split back into one Exec per command. A step with no end mark (the batch was cut
 * off, or could not start) gets the batch's exit code and its stderr, so it reads as failed, and
 * overran when the batch did: the steps that finished before the deadline are answers all the same.
 */
export function splitSteps(batch: Exec, commands: readonly string[]): Exec[] {
  const stderrOf = new Map<number, string>();
  const parts = batch.stderr.split(new RegExp(`${STEP} (\\d+)\\n`));
  for (let i = 1; i < parts.length; i += 2) stderrOf.set(Number(parts[i]), parts[i + 1]);
  const done = new Map<number, Exec>();
  const record = new RegExp(`${STEP} (\\d+)\\n([\\s\\S]*?)${END} \\1 (\\d+) (\\d+)\\n`, "g");
  for (const [, index, stdout, exitCode, ms] of batch.stdout.matchAll(record)) {
    const i = Number(index);
    done.set(i, { where: batch.where, command: commands[i], exitCode: Number(exitCode), stdout, stderr: stderrOf.get(i) ?? "", ms: Number(ms) });
  }
  // What came before the first mark is the session's own complaint (ssh, nsenter, a missing container).
  const before = parts[0];
  return commands.map(
    (command, i) =>
      done.get(i) ?? {
        where: batch.where,
        command,
        exitCode: batch.exitCode === 0 ? 1 : batch.exitCode,
        stdout: "",
        stderr: `${before}${stderrOf.get(i) ?? ""}` || `k8slab: no output for this step (the batch exited ${batch.exitCode})\n`,
        ms: batch.ms,
        ...(batch.overran ? { overran: true as const } : {}),
        ...(batch.unreachable ? { unreachable: true as const } : {}),
      },
  );
}

// The k8slab command as the measuring scripts run it (the lifecycle bench, the soak's second `up`, the
// repeat harness): the project's own Node and the bin script, in its own process group, timed, its
// stdout and stderr kept apart (JSON on stdout) and together (the whole output, in order); and what
// `up` reports about itself (each step's seconds, what Pulumi changed).
import { spawn } from "node:child_process";
import path from "node:path";
import { repoRoot } from "../toolchain/paths.ts";

export interface K8slabRun {
  args: string[];
  startedAt: string;
  seconds: number;
  /** The exit status; a run ended by a signal counts as 128 + its number, as a shell reports it. */
  exitCode: number;
  signal?: NodeJS.Signals;
  stdout: string;
  stderr: string;
  /** stdout and stderr as they came. */
  output: string;
}

export interface RunningK8slab {
  /** The child's pid, which is also its process group's id. */
  pid: number;
  done: Promise<K8slabRun>;
  /**
   * Stops the run: `signal` to k8slab itself (inside Pulumi's step it asks Pulumi to stop, and the
   * run ends on its own), then, once it has ended or after `graceMs`, SIGKILL to whatever is left of
   * its process group. Not `signal` to the whole group: Pulumi would take a second SIGINT (k8slab's
   * own) as "stop at once".
   */
  stop(signal: NodeJS.Signals, graceMs?: number): Promise<K8slabRun>;
  /** SIGKILL to its whole process group now. */
  kill(): void;
}

export const secondsSince = (started: number) => Math.round((Date.now() - started) / 100) / 10;

/** A file-name-safe stamp of now: 2025-01-31T12-00-00-000Z. */
export const fileStamp = (at = new Date()) => at.toISOString().replace(/[:.]/g, "-");

const SIGNAL_NUMBER: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

/** Starts `k8slab ARGS` from the repository, as a user runs it after `npm ci`, in a process group of its own. */
export function startK8slab(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): RunningK8slab {
  const started = Date.now();
  const startedAt = new Date(started).toISOString();
  const child = spawn(path.join(repoRoot, "node_modules/.bin/node"), [path.join(repoRoot, "scripts/bin/k8slab.mjs"), ...args], {
    cwd: repoRoot,
    env: opts.env ?? process.env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const output: string[] = [];
  const keep = (stream: string[]) => (s: string) => {
    stream.push(s);
    output.push(s);
  };
  child.stdout.setEncoding("utf8").on("data", keep(stdout));
  child.stderr.setEncoding("utf8").on("data", keep(stderr));
  const done = new Promise<K8slabRun>((resolve) => {
    const finish = (code: number | null, signal: NodeJS.Signals | null, error?: Error) =>
      resolve({
        args,
        startedAt,
        seconds: secondsSince(started),
        exitCode: code ?? (signal ? 128 + (SIGNAL_NUMBER[signal] ?? 0) : 1),
        ...(signal ? { signal } : {}),
        stdout: stdout.join(""),
        stderr: stderr.join("") + (error ? `${error.message}\n` : ""),
        output: output.join("") + (error ? `${error.message}\n` : ""),
      });
    child.on("error", (err) => finish(null, null, err));
    child.on("close", (code, signal) => finish(code, signal));
    // A process it left behind may hold its stdout open: the run has ended when k8slab has, give or take its last lines.
    child.on("exit", (code, signal) =>
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(code, signal);
      }, 5_000).unref(),
    );
  });
  const group = (signal: NodeJS.Signals) => {
    try {
      if (child.pid) process.kill(-child.pid, signal);
    } catch {
      /* the group is gone */
    }
  };
  return {
    pid: child.pid ?? -1,
    done,
    kill: () => group("SIGKILL"),
    async stop(signal, graceMs = 60_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      group("SIGKILL");
      return done;
    },
  };
}

/** Runs `k8slab ARGS` to its end. */
export const runK8slab = (args: string[], opts: { env?: NodeJS.ProcessEnv } = {}) => startK8slab(args, opts).done;

/** "✓ name (12.3 s)" lines of a k8slab run, by name. */
export function stepSeconds(stderr: string): Record<string, number> {
  return Object.fromEntries([...stderr.matchAll(/^✓ (.+) \(([\d.]+) s\)$/gm)].map((m) => [m[1], Number(m[2])]));
}

/** `up`'s summary line: what Pulumi changed (`{"same":51}` when nothing), or undefined when it printed none. */
export function upChanges(stderr: string, labName: string): string | undefined {
  return stderr.match(new RegExp(`^lab ${labName}: (\\{.*\\})$`, "m"))?.[1];
}

/** A second `up` changed nothing: Pulumi's summary counts only resources left the same. */
export const changedNothing = (changes: string | undefined) => /^\{"same":\d+\}$/.test(changes ?? "");

// What a test starts, it owns, and nothing it starts outlives it. `spawnOwned` starts a process in a
// process group of its own (detached), under `setpriv --pdeathsig` so the kernel signals it the moment
// the test's process dies, however it dies (SIGKILL too). The test ends it with `stop` (its whole
// group: what it started too). When the test's process is told to stop (SIGINT, SIGTERM, SIGHUP) or
// finds its test runner gone (`node --test` killed leaves a test file's process running on its own),
// every group still running is stopped and the cleanups given to `atAbnormalEnd` run (an e2e test's
// `down` of its own lab), then the process ends; on any exit, a group still running gets SIGKILL.
// Only processes started here are ever signalled, by their own process group id.
import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { constants } from "node:os";
import { beforeEach } from "node:test";

export interface Owned {
  readonly pid: number;
  readonly child: ChildProcess;
  /** Its exit code, or null when a signal ended it. */
  readonly exited: Promise<number | null>;
  running(): boolean;
  /**
   * Sends `signal` (to its group, or to it alone: `firstSignalTo`), SIGKILL to the group once graceMs
   * have passed, and to what is left of the group once it has exited; resolves when it has exited. Once:
   * asked again, the same. A process that has exited is left alone.
   */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
}

export interface OwnedOptions extends Omit<SpawnOptions, "detached"> {
  /** What the kernel sends it when the test's process dies: KILL (a daemon), or TERM (a k8slab run, which then unlocks its lab). */
  deathSignal?: "KILL" | "TERM";
  /**
   * Who gets stop's first signal: the whole group (a daemon and its helpers), or the process alone (a
   * k8slab run: it asks Pulumi to stop cleanly, which a signal to Pulumi's own processes would not).
   */
  firstSignalTo?: "group" | "leader";
  /** How long stop waits after its first signal before SIGKILL, unless told (default 10 s). */
  graceMs?: number;
}

/** The argv that starts `command` with a parent-death signal (setpriv is util-linux's, in the host packages). */
export const withDeathSignal = (signal: "KILL" | "TERM", command: string, args: readonly string[]) => [
  "setpriv",
  "--pdeathsig",
  signal,
  "--",
  command,
  ...args,
];

const running = new Set<Owned>();
const cleanups = new Set<() => void>();
/** The processes started during the test that runs now (see stopWhenTestEnds). */
let startedInTest: Set<Owned> | undefined;

/** Signals a process group; false when it has no process left. */
function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Starts command in a process group of its own that dies with this process. */
export function spawnOwned(command: string, args: readonly string[], opts: OwnedOptions = {}): Owned {
  const { deathSignal = "KILL", firstSignalTo = "group", graceMs: defaultGraceMs = 10_000, ...spawnOpts } = opts;
  watchForAbnormalEnd();
  const [file, ...argv] = withDeathSignal(deathSignal, command, args);
  const child = spawn(file, argv, { ...spawnOpts, detached: true });
  if (child.pid === undefined) {
    // spawn reports why on "error"; the exit below never comes.
    child.once("error", () => {});
    throw new Error(`could not start ${command} (setpriv ${deathSignal})`);
  }
  const pid = child.pid;
  let exitCode: number | null | undefined;
  let stopping: Promise<number | null> | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      exitCode = code;
      running.delete(owned);
      resolve(code);
    }),
  );
  const owned: Owned = {
    pid,
    child,
    exited,
    running: () => exitCode === undefined,
    stop(signal = "SIGTERM", graceMs = defaultGraceMs) {
      if (exitCode !== undefined) return Promise.resolve(exitCode);
      // Once: a second SIGTERM would tell k8slab to stop Pulumi at once instead of cleanly.
      stopping ??= (async () => {
        if (firstSignalTo === "group") signalGroup(pid, signal);
        else child.kill(signal);
        const timer = setTimeout(() => signalGroup(pid, "SIGKILL"), graceMs);
        const code = await exited;
        clearTimeout(timer);
        // What it started and left behind in its group (none, when it ended them itself).
        signalGroup(pid, "SIGKILL");
        return code;
      })();
      return stopping;
    },
  };
  running.add(owned);
  startedInTest?.add(owned);
  return owned;
}

/**
 * In the suite (or file) it is called in: what each test started and is still running when the test
 * ends is stopped, its whole group (node:test aborts a test's signal when it ends: passed, failed, or
 * timed out, when its body runs on unawaited). Called once per suite, before the tests.
 */
export function stopWhenTestEnds(signal: NodeJS.Signals = "SIGTERM", graceMs?: number): void {
  beforeEach((t) => {
    const mine = new Set<Owned>();
    startedInTest = mine;
    t.signal.addEventListener(
      "abort",
      () => {
        if (startedInTest === mine) startedInTest = undefined;
        for (const o of mine) if (o.running()) void o.stop(signal, graceMs);
      },
      { once: true },
    );
  });
}

/** Every owned process still running, stopped (see Owned.stop; graceMs, or each one's own). */
export async function stopOwned(signal: NodeJS.Signals = "SIGTERM", graceMs?: number): Promise<void> {
  await Promise.all([...running].map((o) => o.stop(signal, graceMs)));
}

/**
 * `fn` runs (synchronously, once) when this process ends without its tests' own `after` hooks: on
 * SIGINT, SIGTERM or SIGHUP, or when its test runner is gone. Returns what unregisters it.
 */
export function atAbnormalEnd(fn: () => void): () => void {
  watchForAbnormalEnd();
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

let watching = false;
let ending: Promise<never> | undefined;

/**
 * How this process ends when no `after` hook will run: its owned groups stopped, its cleanups run, then
 * the exit (by the signal, re-raised, or 1). Once: whatever asks again (the next watchdog tick, another
 * failed write) waits for the first.
 */
function endAbnormally(why: string, signal?: NodeJS.Signals): Promise<never> {
  ending ??= (async () => {
    // The runner reading our output may be gone: a write must not end us halfway through.
    for (const s of [process.stdout, process.stderr]) s.on("error", () => {});
    try {
      process.stderr.write(`${why}: stopping ${running.size} process group(s) this test started, then its cleanups\n`);
    } catch {}
    await stopOwned("SIGTERM");
    for (const fn of cleanups) {
      try {
        fn();
      } catch {}
    }
    if (signal) {
      for (const s of SIGNALS) process.removeAllListeners(s);
      process.kill(process.pid, signal);
    }
    process.exit(signal ? 128 + constants.signals[signal] : 1);
  })();
  return ending;
}

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

function watchForAbnormalEnd(): void {
  if (watching) return;
  watching = true;
  for (const s of SIGNALS) process.on(s, () => void endAbnormally(s, s));
  // node --test runs each file in a process of its own; when the runner is killed, that process runs
  // on with no one to report to (reparented): it ends, with what it started.
  const runner = process.ppid;
  setInterval(() => {
    if (process.ppid !== runner) void endAbnormally(`the test runner (pid ${runner}) is gone`);
  }, 500).unref();
  // Often seen first: the runner's end of our output closed (a write fails with EPIPE, which would
  // otherwise end this process at once, with no cleanup).
  for (const s of [process.stdout, process.stderr])
    s.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EPIPE") void endAbnormally("the test runner's end of this process's output is closed");
      else throw err;
    });
  process.on("exit", () => {
    for (const o of running) signalGroup(o.pid, "SIGKILL");
  });
}

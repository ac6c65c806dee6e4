// What SIGINT and SIGTERM do to a k8slab command. By default the command stops at once with 128 +
// the signal's number (130, 143), as a shell reports it, wherever it is waiting. A step with its own
// answer (the lab lock's: Pulumi's own cancel; the toolchain build's: stop the compiler) claims the
// signals while it runs, and the default stays out of its way. Other listeners (signal-exit, which
// proper-lockfile uses to remove its locks on exit) do not count: they leave ending the process to others.
import { exitOnSignal } from "../core/exit.ts";

const STOP_SIGNALS = ["SIGINT", "SIGTERM"] as const;
let claims = 0;
let installed = false;
let running = "k8slab";

/** Claims SIGINT and SIGTERM for the caller's own handler until the returned function is called. */
export function claimSignals(): () => void {
  claims++;
  let released = false;
  return () => {
    if (!released) claims--;
    released = true;
  };
}

/** Installs the default (once per process): a signal no step claimed ends the command `name` at once. */
export function stopOnSignals(name: string): void {
  running = name;
  if (installed) return;
  installed = true;
  for (const signal of STOP_SIGNALS) {
    process.on(signal, () => {
      if (claims > 0) return;
      process.stderr.write(`${running}: ${signal}: stopped\n`);
      process.exit(exitOnSignal(signal));
    });
  }
}

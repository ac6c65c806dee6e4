// Entry point of the plugin `pulumi-resource-k8slab`: serves the provider to the Pulumi engine.
import "../../scripts/quiet-bash.ts";
import fs from "node:fs";
import os from "node:os";
import * as provider from "@pulumi/pulumi/provider/index.js";
import { PLUGIN_LOG_ENV } from "../../scripts/run-log.ts";
import { commandProvider } from "./provider.ts";

/**
 * The engine says only "connection reset" when a plugin goes away: with `K8SLAB_PLUGIN_LOG` set (`up`
 * sets it to a file in the lab's log folder), the provider writes there when it starts, each operation
 * it begins and ends, and how it ended: an exit code, a signal, an uncaught error.
 */
function witnessed(p: provider.Provider, file: string): provider.Provider {
  const log = (line: string) => {
    try {
      fs.appendFileSync(file, `${new Date().toISOString()} pulumi-resource-k8slab pid ${process.pid}: ${line}\n`);
    } catch {
      // the log is a witness, never a reason to fail
    }
  };
  log("started");
  process.on("exit", (code) => log(`exits with code ${code}`));
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
    process.on(signal, () => {
      log(`received ${signal}`);
      process.exit(128 + os.constants.signals[signal]);
    });
  process.on("uncaughtExceptionMonitor", (err) => log(`uncaught: ${err.stack ?? err}`));
  const traced =
    <A extends unknown[], R>(op: string, urnAt: number, fn: (...a: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      const urn = String(args[urnAt]).split("::").at(-1);
      const started = Date.now();
      log(`${op} ${urn} ...`);
      try {
        const r = await fn(...args);
        log(`${op} ${urn} done (${Date.now() - started} ms)`);
        return r;
      } catch (err) {
        log(`${op} ${urn} failed (${Date.now() - started} ms): ${String((err as Error).message).split("\n")[0]}`);
        throw err;
      }
    };
  return {
    ...p,
    create: p.create && traced("create", 0, p.create),
    update: p.update && traced("update", 1, p.update),
    delete: p.delete && traced("delete", 1, p.delete),
  };
}

const logFile = process.env[PLUGIN_LOG_ENV];
await provider.main(logFile ? witnessed(commandProvider, logFile) : commandProvider, process.argv.slice(2));

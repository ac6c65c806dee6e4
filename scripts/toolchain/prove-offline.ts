// Proves the bundled Pulumi works with no network: `pulumi version`, `pulumi plugin ls` and a
// `pulumi preview` of a throwaway stack (temp dir, file backend) using the project's providers.
// Exit 0 only if every step passed and every provider the project uses is bundled.
// Run: npx tsx scripts/toolchain/prove-offline.ts [--json]
import { mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { $ } from "zx";
import { pulumiEnv, repoRoot } from "./paths.ts";

export interface OfflineStep {
  command: string;
  exitCode: number;
  output: string;
  ms: number;
}

/**
 * The bundled providers the project's Pulumi program uses, by npm package. The project's own
 * provider (k8slab, infra/provider) is not bundled: pulumiEnv() puts its plugin on PATH.
 */
export const projectProviders = [{ npm: "@pulumi/kubernetes", plugin: "kubernetes" }] as const;

/**
 * A stack with one resource per provider given; the cluster address is a closed loopback
 * port, so the kubernetes provider previews without a cluster.
 */
export function throwawayProgram(plugins: string[]): string {
  const lines = ["// Throwaway stack for the offline check: nothing here is ever deployed.", '"use strict";', 'const pulumi = require("@pulumi/pulumi");'];
  if (plugins.includes("kubernetes")) {
    lines.push(
      'const k8s = require("@pulumi/kubernetes");',
      "const kubeconfig = JSON.stringify({",
      '  apiVersion: "v1", kind: "Config", "current-context": "lab",',
      '  clusters: [{ name: "lab", cluster: { server: "https://127.0.0.1:1" } }],',
      '  contexts: [{ name: "lab", context: { cluster: "lab", user: "lab" } }],',
      '  users: [{ name: "lab", user: { token: "none" } }],',
      "});",
      'const provider = new k8s.Provider("lab", { kubeconfig });',
      'new k8s.core.v1.ConfigMap("probe", { data: { hello: "offline" } }, { provider });',
    );
  }
  // The project's own provider (infra/provider/command.ts declares the same type token).
  lines.push('new pulumi.CustomResource("k8slab:index:Command", "hello", { create: "echo hello", stdout: undefined, stderr: undefined });');
  lines.push("exports.stack = pulumi.getStack();", "");
  return lines.join("\n");
}

/** Providers whose plugin is registered in the bundle's PULUMI_HOME. */
async function registeredPlugins(): Promise<string[]> {
  const dir = path.join(pulumiEnv().PULUMI_HOME, "plugins");
  const names = await readdir(dir).catch(() => [] as string[]);
  return projectProviders.filter((p) => names.some((n) => n.startsWith(`resource-${p.plugin}-v`) && !n.endsWith(".lock"))).map((p) => p.plugin);
}

/** Runs the three checks in a temp dir; never throws for a failed check, it reports it. */
export async function proveOffline(): Promise<OfflineStep[]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "k8slab-offline-"));
  // A throwaway stack with no secrets: any passphrase will do.
  const env = {
    ...(process.env as Record<string, string>),
    ...pulumiEnv(),
    PULUMI_BACKEND_URL: `file://${path.join(dir, "state")}`,
    PULUMI_CONFIG_PASSPHRASE: "offline-check",
  };
  try {
    await writeFile(path.join(dir, "Pulumi.yaml"), "name: k8slab-offline-check\nruntime: nodejs\nmain: index.js\n");
    const plugins = await registeredPlugins();
    await writeFile(path.join(dir, "index.js"), throwawayProgram(plugins));
    await writeFile(path.join(dir, "package.json"), '{ "name": "k8slab-offline-check", "private": true }\n');
    await symlink(path.join(repoRoot, "node_modules"), path.join(dir, "node_modules"));
    const steps: OfflineStep[] = [];
    // A provider the bundle lacks would make the engine try to download it; say so instead.
    for (const p of projectProviders.filter((x) => !plugins.includes(x.plugin))) {
      steps.push({ command: `(bundle has plugin ${p.plugin} for ${p.npm})`, exitCode: 1, output: "missing: left out of the preview", ms: 0 });
    }
    const run = async (args: string[]) => {
      const started = Date.now();
      const out = await $({ cwd: dir, env, nothrow: true, quiet: true })`pulumi ${args}`;
      steps.push({ command: `pulumi ${args.join(" ")}`, exitCode: out.exitCode ?? 1, output: (out.stdout + out.stderr).trim(), ms: Date.now() - started });
    };
    await run(["version"]);
    await run(["plugin", "ls"]);
    await $({ quiet: true })`mkdir -p ${path.join(dir, "state")}`;
    await run(["login", env.PULUMI_BACKEND_URL]);
    await run(["stack", "init", "offline", "--non-interactive"]);
    await run(["preview", "--non-interactive", "--stack", "offline", "--diff"]);
    return steps;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const steps = await proveOffline();
  if (process.argv.includes("--json")) {
    process.stdout.write(`${JSON.stringify(steps, null, 2)}\n`);
  } else {
    for (const s of steps) {
      process.stdout.write(`$ ${s.command}   (exit ${s.exitCode}, ${s.ms} ms)\n${s.output}\n\n`);
    }
  }
  process.exitCode = steps.every((s) => s.exitCode === 0) ? 0 : 1;
}

// Where the toolchain lives: the cache outside the repo, the bundle inside it, and the
// environment that runs the bundled Pulumi without ever reaching for the network.
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (this file is scripts/toolchain/paths.ts). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

export const manifestFile = path.join(repoRoot, "scripts", "toolchain", "versions.yaml");

/** Committed wrapper modules, one folder per artifact. */
export const wrapperSourceDir = (name: string) => path.join(repoRoot, "scripts", "toolchain", "go", name);

/** The cache: K8SLAB_CACHE, else ~/.cache/k8slab. Holds the bundle, Go caches, logs and work dirs. */
export function cacheRoot(): string {
  const fromEnv = process.env.K8SLAB_CACHE;
  return path.resolve(fromEnv && fromEnv.length > 0 ? fromEnv : path.join(os.homedir(), ".cache", "k8slab"));
}

/** The bundle: binaries, CNI plugins, Pulumi and its plugins, and bundle.json. Layout version 1. */
export function bundleDir(): string {
  return path.join(cacheRoot(), "bundle-v1");
}

/** The lab binaries (kube-*, kubectl, etcd, etcdctl, flanneld, coredns, crictl, nginx-ingress, pause). */
export function bundleBinDir(): string {
  return path.join(bundleDir(), "bin");
}

export function pulumiBinDir(): string {
  return path.join(bundleDir(), "pulumi", "bin");
}

export function pulumiHome(): string {
  return path.join(bundleDir(), "pulumi", "home");
}

/** The project's own provider plugin (infra/provider). */
export const providerBinDir = path.join(repoRoot, "infra", "provider", "bin");

export const stateFile = () => path.join(bundleDir(), "bundle.json");
/** Each bundle file's hash with the stat it had then: the warm check reads only what changed (not exported). */
export const bundleStatCache = () => path.join(cacheRoot(), "bundle-stat.json");
export const logDir = () => path.join(cacheRoot(), "logs");
export const workDir = (name: string) => path.join(cacheRoot(), "work", name);
export const goCacheDir = () => path.join(cacheRoot(), "go");
/** The Go the bundle is built with (GOROOT), unpacked from the module proxy's golang.org/toolchain zip. */
export const goRootDir = () => path.join(goCacheDir(), "sdk");

/**
 * Environment for running the bundled pulumi offline: the bundle's pulumi first on PATH,
 * then the project's own provider plugin (pulumi-resource-k8slab, found on PATH like any
 * ambient plugin), then the repo's Node (the SDK needs Node >= 22), other plugins only from the bundle's
 * PULUMI_HOME, no update checks. No passphrase: each lab's stack has its own (stack.ts).
 */
export function pulumiEnv(): Record<string, string> {
  const env: Record<string, string> = {
    PATH: [pulumiBinDir(), providerBinDir, path.join(repoRoot, "node_modules", ".bin"), process.env.PATH ?? ""].join(path.delimiter),
    PULUMI_HOME: pulumiHome(),
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
    PULUMI_DIY_BACKEND_GZIP: "false",
  };
  if (!process.env.PULUMI_BACKEND_URL) {
    env.PULUMI_BACKEND_URL = `file://${path.join(cacheRoot(), "state")}`;
  }
  return env;
}

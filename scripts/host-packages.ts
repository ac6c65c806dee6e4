// The Debian packages k8slab needs on this machine (scripts/machines/host-packages.txt): which are
// missing, and installing them with apt-get, so a fresh machine gets from `npm ci` to a lab in one `up`.
import fs from "node:fs";
import path from "node:path";
import { $ } from "zx";
import { repoRoot } from "./toolchain/paths.ts";

export const hostPackagesFile = path.join(repoRoot, "scripts", "machines", "host-packages.txt");

export function hostPackages(text = fs.readFileSync(hostPackagesFile, "utf8")): string[] {
  return text
    .split("\n")
    .map((l) => l.replace(/#.*/, "").trim())
    .filter(Boolean);
}

/** Packages dpkg does not report as installed. */
export async function missingHostPackages(packages = hostPackages()): Promise<string[]> {
  const r = await $({ nothrow: true, quiet: true })`dpkg-query -W -f ${"${Package} ${db:Status-Status}\n"} ${packages}`;
  const installed = new Set(
    r.stdout
      .split("\n")
      .filter((l) => l.endsWith(" installed"))
      .map((l) => l.split(" ")[0]),
  );
  return packages.filter((p) => !installed.has(p));
}

/** Installs what is missing from Debian's mirror (root only); returns what it installed. */
export async function ensureHostPackages(log: (s: string) => void): Promise<string[]> {
  const missing = await missingHostPackages();
  if (!missing.length) return [];
  if (process.getuid?.() !== 0) throw new Error(`missing Debian packages ${missing.join(", ")}: run as root, or apt-get install them`);
  log(`  apt-get install ${missing.join(" ")}`);
  await $({ quiet: true, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } })`apt-get update -qq`;
  await $({ quiet: true, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } })`apt-get install -y -qq --no-install-recommends ${missing}`;
  return missing;
}

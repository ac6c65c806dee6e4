// The toolchain manifest (scripts/toolchain/versions.yaml): strict parsing, and the pure
// derivations every other part uses (build keys, ldflags, wrapper module names).
import { createHash } from "node:crypto";
import yaml from "js-yaml";
import { z } from "zod";

const goModulePath = z.string().regex(/^[a-z0-9.-]+(\.[a-z]+)?(\/[A-Za-z0-9._~+-]+)*$/, "not a Go module path");
const goVersion = z.string().regex(/^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+incompatible)?$/, "not a Go module version (vX.Y.Z)");
const bundlePath = z
  .string()
  .regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/, "must be a relative path inside the bundle")
  .refine((p) => !p.split("/").includes(".."), "must stay inside the bundle");

const PackageSpec = z.strictObject({
  /** Import path of the main package to build. */
  pkg: z.string().min(1),
  /** Where the binary lands, relative to the bundle root. */
  out: bundlePath,
});

const PluginSpec = z.strictObject({
  /** Pulumi plugin kind; only resource providers are bundled. */
  kind: z.literal("resource"),
  /** Plugin name as Pulumi knows it (pulumi-resource-NAME). */
  name: z.string().regex(/^[a-z0-9-]+$/),
  /** npm package whose package.json `pulumi.version` must equal this plugin's version. */
  npmPackage: z.string().min(1),
});

const ArtifactSpec = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, "lower-case name, digits and dashes"),
    description: z.string().default(""),
    /** Main module (fetched through the module proxy); absent for `local` sources. */
    module: goModulePath.optional(),
    /** Directory in the repo holding a self-contained Go module (for tiny programs of our own). */
    local: z.string().optional(),
    /** The artifact's release version (what the bundle records and ldflags see as {version}). */
    version: goVersion,
    /**
     * The Go module version to fetch when it differs from the release version: a
     * pseudo-version naming the release commit, for modules whose tags are not module tags.
     */
    moduleVersion: goVersion.optional(),
    /** Further modules pinned next to the main one (same wrapper, same go.sum). */
    also: z.record(goModulePath, goVersion).default({}),
    /**
     * What to do with the main module's replace directives that point into its own tree:
     * `drop` (the default: the wrapper already requires those modules at real versions) or
     * `staging` (k8s.io/kubernetes: point each at its published v0.MINOR.PATCH tag).
     */
    localReplaces: z.enum(["drop", "staging"]).default("drop"),
    /** Modules the public checksum database does not know; go.sum in the repo is their only check. */
    noSumDb: z.array(goModulePath).default([]),
    /** Files generated before building, from files of the same module (`go generate` style). */
    generate: z.array(z.strictObject({ dir: z.string().min(1), run: z.string().min(1) })).default([]),
    packages: z.array(PackageSpec).min(1),
    /** Build with cgo (CGO_ENABLED=1) for the few upstream binaries that need C; default off. */
    cgo: z.boolean().default(false),
    /** Go build tags. */
    tags: z.array(z.string().regex(/^[A-Za-z0-9_.]+$/)).default([]),
    /** Data files shipped with the binaries, copied from the main module (templates and the like). */
    files: z.array(z.strictObject({ from: z.string().min(1), out: bundlePath })).default([]),
    ldflags: z.string().default(""),
    /** Set for Pulumi provider plugins: registered into the bundle's PULUMI_HOME after building. */
    plugin: PluginSpec.optional(),
  })
  .refine((a) => (a.module ? !a.local : !!a.local), "give exactly one of module or local");

const GoSpec = z.strictObject({
  /** The Go release that builds every artifact, as `go env GOVERSION` names it. */
  version: z.string().regex(/^go1\.\d+(\.\d+)?$/, "a Go release (go1.N.P)"),
  /** Per platform (linux-amd64, ...), the sha256 of golang.org/toolchain@v0.0.1-<version>.<platform>.zip. */
  sha256: z.record(z.string().regex(/^[a-z0-9]+-[a-z0-9]+$/, "a Go platform (linux-amd64)"), z.string().regex(/^[0-9a-f]{64}$/, "a sha256 in hex")),
});

const ManifestSpec = z.strictObject({
  layout: z.literal(1),
  go: GoSpec,
  artifacts: z.array(ArtifactSpec).min(1),
});

export type Artifact = z.infer<typeof ArtifactSpec>;
export type GoPin = z.infer<typeof GoSpec>;
export type Manifest = z.infer<typeof ManifestSpec>;

/** Parses and validates versions.yaml text; throws one error listing every problem. */
export function parseManifest(text: string): Manifest {
  const raw = yaml.load(text);
  const parsed = ManifestSpec.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new Error(`invalid toolchain manifest:\n${lines.join("\n")}`);
  }
  const problems: string[] = [];
  const names = new Set<string>();
  const outs = new Map<string, string>();
  parsed.data.artifacts.forEach((a, i) => {
    if (names.has(a.name)) problems.push(`artifacts.${i}.name: duplicate artifact ${a.name}`);
    names.add(a.name);
    for (const p of [...a.packages, ...a.files]) {
      const owner = outs.get(p.out);
      if (owner) problems.push(`artifacts.${i}.packages: ${p.out} is also produced by ${owner}`);
      outs.set(p.out, a.name);
    }
    if (a.plugin && a.plugin.kind === "resource" && a.packages.length !== 1) {
      problems.push(`artifacts.${i}.packages: a plugin artifact builds exactly one binary`);
    }
  });
  if (problems.length) throw new Error(`invalid toolchain manifest:\n${problems.join("\n")}`);
  return parsed.data;
}

/** Stable JSON (sorted keys) so that digests do not depend on key order in the YAML. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export function sha256Hex(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * What decides whether an artifact must be rebuilt: its manifest entry (the description
 * aside), the Go toolchain, and for local sources the content of their files. A changed pin
 * changes only that artifact's key, so only that artifact is rebuilt.
 */
export function buildKey(artifact: Artifact, goVersionString: string, localSourceDigest = ""): string {
  return sha256Hex(canonicalJson({ pinned: pinnedFields(artifact), go: goVersionString, localSourceDigest })).slice(0, 16);
}

/**
 * The fields that shape the build. Empty and default values are left out, so that a new
 * optional manifest field does not change the key of every artifact that does not use it.
 */
export function pinnedFields(artifact: Artifact): Record<string, unknown> {
  const { description: _description, ...rest } = artifact;
  return Object.fromEntries(
    Object.entries(rest).filter(([k, v]) => {
      if (v === undefined || v === "") return false;
      if (Array.isArray(v)) return v.length > 0;
      if (typeof v === "object" && v !== null) return Object.keys(v).length > 0;
      return !(k === "localReplaces" && v === "drop") && !(k === "cgo" && v === false);
    }),
  );
}

/** Digest of the whole manifest: the bundle's version. */
export function manifestDigest(manifest: Manifest): string {
  return sha256Hex(canonicalJson(manifest)).slice(0, 12);
}

export interface VersionFacts {
  /** Commit hash the module proxy recorded for the version, if any. */
  commit?: string;
  /** RFC 3339 time of that commit. */
  time?: string;
}

/** Expands {version}, {major}, … in an ldflags string; unknown facts become "unknown". */
export function expandLdflags(template: string, version: string, facts: VersionFacts): string {
  const m = /^v(\d+)\.(\d+)\.(\d+)/.exec(version);
  const values: Record<string, string> = {
    version,
    semver: version.replace(/^v/, ""),
    major: m?.[1] ?? "0",
    minor: m?.[2] ?? "0",
    patch: m?.[3] ?? "0",
    commit: facts.commit ?? "unknown",
    time: facts.time ?? "1970-01-01T00:00:00Z",
  };
  return template
    .replace(/\{(\w+)\}/g, (whole, key: string) => {
      if (!(key in values)) throw new Error(`unknown placeholder ${whole} in ldflags`);
      return values[key];
    })
    .replace(/\s+/g, " ")
    .trim();
}

/** Every file the artifact puts into the bundle, relative to the bundle root. */
export function artifactOutputs(artifact: Artifact): string[] {
  if (artifact.plugin) {
    return [pluginInstallPath(artifact)];
  }
  return [...artifact.packages.map((p) => p.out), ...artifact.files.map((f) => f.out)];
}

/** The version of the main module to fetch. */
export function modulePin(artifact: Artifact): string {
  return artifact.moduleVersion ?? artifact.version;
}

/** Where `pulumi plugin install` puts a provider binary inside the bundle's PULUMI_HOME. */
export function pluginInstallPath(artifact: Artifact): string {
  if (!artifact.plugin) throw new Error(`${artifact.name} is not a plugin`);
  const { kind, name } = artifact.plugin;
  return `pulumi/home/plugins/${kind}-${name}-${artifact.version}/pulumi-${kind}-${name}`;
}

/** The plugin version Pulumi uses: the Go version without its leading v. */
export function pluginVersion(artifact: Artifact): string {
  return artifact.version.replace(/^v/, "");
}

// Manifest parsing and the pure derivations from it: build keys, ldflags, wrapper go.mod.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { maxGoVersion, parseGoMod, renderWrapperGoMod, stagingVersion } from "../scripts/toolchain/gomod.ts";
import { artifactOutputs, buildKey, expandLdflags, modulePin, parseManifest, pluginInstallPath, pluginVersion } from "../scripts/toolchain/manifest.ts";
import { manifestFile, repoRoot, wrapperSourceDir } from "../scripts/toolchain/paths.ts";

const minimal = (extra = "") => `
layout: 1\ngo: { version: go1.26.8, sha256: { linux-amd64: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa } }
artifacts:
  - name: crictl
    module: sigs.k8s.io/cri-tools
    version: v1.34.0
    packages:
      - { pkg: sigs.k8s.io/cri-tools/cmd/crictl, out: bin/crictl }
    ldflags: -X sigs.k8s.io/cri-tools/pkg/version.Version={version}
${extra}`;

describe("the repository's versions.yaml", () => {
  const manifest = parseManifest(readFileSync(manifestFile, "utf8"));
  const byName = (n: string) => manifest.artifacts.find((a) => a.name === n);

  it("pins every artifact the lab needs", () => {
    const outs = manifest.artifacts.flatMap(artifactOutputs);
    for (const bin of [
      "kube-apiserver",
      "kube-controller-manager",
      "kube-scheduler",
      "kubelet",
      "kube-proxy",
      "kubectl",
      "etcd",
      "etcdctl",
      "flanneld",
      "coredns",
      "crictl",
      "nginx-ingress",
      "pause",
    ]) {
      assert.ok(outs.includes(`bin/${bin}`), `bin/${bin}`);
    }
    for (const cni of ["bridge", "host-local", "loopback", "portmap", "flannel"]) assert.ok(outs.includes(`cni/bin/${cni}`), cni);
    assert.ok(outs.includes("pulumi/bin/pulumi"));
  });

  it("uses Kubernetes 1.33 or newer and etcd 3.5 or newer", () => {
    const [, kMinor] = /^v1\.(\d+)\./.exec(byName("kubernetes")!.version)!;
    assert.ok(Number(kMinor) >= 33);
    const [, eMajor, eMinor] = /^v(\d+)\.(\d+)\./.exec(byName("etcd")!.version)!;
    assert.ok(Number(eMajor) > 3 || Number(eMinor) >= 5);
  });

  it("pins each provider plugin at exactly the version its npm package asks for", () => {
    for (const a of manifest.artifacts.filter((x) => x.plugin)) {
      const pkg = path.join(repoRoot, "node_modules", a.plugin!.npmPackage, "package.json");
      if (!existsSync(pkg)) continue;
      assert.equal(JSON.parse(readFileSync(pkg, "utf8")).pulumi.version, pluginVersion(a), a.plugin!.npmPackage);
    }
  });

  it("has a committed wrapper module only for artifacts it lists, each requiring the pinned version", () => {
    const dir = path.join(repoRoot, "scripts", "toolchain", "go");
    for (const name of readdirSync(dir)) {
      const a = byName(name);
      assert.ok(a, `scripts/toolchain/go/${name} belongs to no artifact`);
      if (a.local) continue;
      const goMod = readFileSync(path.join(wrapperSourceDir(name), "go.mod"), "utf8");
      assert.match(goMod, new RegExp(`\\n(\\t|require )${a.module!.replace(/[.]/g, "\\.")} ${modulePin(a).replace(/[.+]/g, "\\$&")}( // indirect)?\\n`), name);
    }
  });
});

describe("parseManifest", () => {
  it("accepts a minimal manifest and fills defaults", () => {
    const m = parseManifest(minimal());
    assert.equal(m.artifacts[0].localReplaces, "drop");
    assert.deepEqual(m.artifacts[0].also, {});
  });

  it("rejects unknown keys, naming the field", () => {
    assert.throws(
      () => parseManifest(minimal().replace("version: v1.34.0", "version: v1.34.0\n    colour: blue")),
      /artifacts\.0.*colour|Unrecognized key.*colour/,
    );
  });

  it("rejects a version that is not vX.Y.Z", () => {
    assert.throws(() => parseManifest(minimal().replace("v1.34.0", "1.34")), /artifacts\.0\.version/);
  });

  it("rejects duplicate names and two artifacts writing one file", () => {
    const dup = `  - name: crictl
    module: sigs.k8s.io/cri-tools
    version: v1.33.0
    packages:
      - { pkg: sigs.k8s.io/cri-tools/cmd/crictl, out: bin/crictl }`;
    assert.throws(
      () => parseManifest(minimal(dup)),
      (e: Error) => /duplicate artifact crictl/.test(e.message) && /bin\/crictl is also produced by crictl/.test(e.message),
    );
  });

  it("wants exactly one of module and local", () => {
    assert.throws(
      () => parseManifest(minimal().replace("module: sigs.k8s.io/cri-tools", "module: sigs.k8s.io/cri-tools\n    local: x")),
      /exactly one of module or local/,
    );
  });

  it("keeps outputs inside the bundle", () => {
    assert.throws(() => parseManifest(minimal().replace("out: bin/crictl", "out: ../crictl")), /inside the bundle/);
  });
});

describe("buildKey", () => {
  const m = parseManifest(minimal());
  const a = m.artifacts[0];

  it("changes when a pin changes, and only for that artifact", () => {
    const other = parseManifest(
      minimal()
        .replace("crictl\n", "crictl2\n")
        .replace(/bin\/crictl/, "bin/crictl2"),
    ).artifacts[0];
    const bumped = { ...a, version: "v1.35.0" };
    assert.notEqual(buildKey(bumped, "go1.26.8"), buildKey(a, "go1.26.8"));
    assert.equal(buildKey(other, "go1.26.8"), buildKey(other, "go1.26.8"));
  });

  it("ignores the description and empty optional fields", () => {
    assert.equal(buildKey({ ...a, description: "changed" }, "go1.26.8"), buildKey(a, "go1.26.8"));
    assert.equal(buildKey({ ...a, files: [], noSumDb: [] }, "go1.26.8"), buildKey(a, "go1.26.8"));
  });

  it("changes with the Go toolchain and with local sources", () => {
    assert.notEqual(buildKey(a, "go1.26.8"), buildKey(a, "go1.27.0"));
    assert.notEqual(buildKey(a, "go1.26.8", "aaa"), buildKey(a, "go1.26.8", "bbb"));
  });
});

describe("expandLdflags", () => {
  it("fills version parts and proxy facts", () => {
    const out = expandLdflags("-X a.v={version} -X a.s={semver} -X a.m={major}.{minor}.{patch}\n -X a.c={commit} -X a.t={time}", "v1.34.4", {
      commit: "abc",
      time: "2026-02-10T12:53:36Z",
    });
    assert.equal(out, "-X a.v=v1.34.4 -X a.s=1.34.4 -X a.m=1.34.4 -X a.c=abc -X a.t=2026-02-10T12:53:36Z");
  });

  it("refuses unknown placeholders", () => {
    assert.throws(() => expandLdflags("-X a={nope}", "v1.0.0", {}), /unknown placeholder \{nope\}/);
  });
});

describe("plugins", () => {
  it("install under PULUMI_HOME/plugins/resource-NAME-vVERSION", () => {
    const m = parseManifest(
      minimal(`  - name: pulumi-kubernetes
    module: github.com/pulumi/pulumi-kubernetes/provider/v4
    version: v4.25.0
    moduleVersion: v4.0.0-20260115033456-f47bc2d6f199
    packages:
      - { pkg: github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes, out: pulumi/plugins/pulumi-resource-kubernetes }
    plugin: { kind: resource, name: kubernetes, npmPackage: "@pulumi/kubernetes" }`),
    );
    const p = m.artifacts[1];
    assert.equal(pluginVersion(p), "4.25.0");
    assert.equal(modulePin(p), "v4.0.0-20260115033456-f47bc2d6f199");
    assert.equal(pluginInstallPath(p), "pulumi/home/plugins/resource-kubernetes-v4.25.0/pulumi-resource-kubernetes");
    assert.deepEqual(artifactOutputs(p), [pluginInstallPath(p)]);
  });
});

describe("wrapper go.mod", () => {
  const kubernetesGoMod = `// This is a generated file. Do not edit directly.

module k8s.io/kubernetes

go 1.24.0

godebug default=go1.24

require (
	k8s.io/api v0.0.0
	github.com/spf13/cobra v1.9.1
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
)
`;

  it("parses block and single-line directives", () => {
    const g = parseGoMod(
      `module github.com/pulumi/pulumi/pkg/v3\n\ngo 1.26.6\n\nreplace github.com/pulumi/pulumi/sdk/v3 => ../sdk\n\nreplace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e\n`,
    );
    assert.equal(g.module, "github.com/pulumi/pulumi/pkg/v3");
    assert.equal(g.go, "1.26.6");
    assert.deepEqual(g.replaces[1], {
      from: "github.com/atotto/clipboard",
      fromVersion: undefined,
      to: "github.com/tgummerer/clipboard",
      toVersion: "v0.0.0-20241001131231-d02d263e614e",
    });
  });

  it("points every Kubernetes staging repo at its published v0 version", () => {
    const m = parseManifest(`layout: 1\ngo: { version: go1.26.8, sha256: { linux-amd64: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa } }
artifacts:
  - name: kubernetes
    module: k8s.io/kubernetes
    version: v1.34.4
    localReplaces: staging
    packages: [{ pkg: k8s.io/kubernetes/cmd/kubectl, out: bin/kubectl }]`);
    const out = renderWrapperGoMod(m.artifacts[0], [parseGoMod(kubernetesGoMod)]);
    assert.match(out, /\tk8s\.io\/api => k8s\.io\/api v0\.34\.4\n/);
    assert.match(out, /\tk8s\.io\/client-go => k8s\.io\/client-go v0\.34\.4\n/);
    assert.match(out, /\ngodebug \(\n\tdefault=go1\.24\n\)/);
    assert.match(out, /\ntool \(\n\tk8s\.io\/kubernetes\/cmd\/kubectl\n\)/);
    assert.match(out, /\trequire|\tk8s\.io\/kubernetes v1\.34\.4\n/);
    assert.match(out, /\ngo 1\.24\.0\n/);
  });

  it("drops replaces into the upstream tree and repeats the others", () => {
    const m = parseManifest(`layout: 1\ngo: { version: go1.26.8, sha256: { linux-amd64: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa } }
artifacts:
  - name: pulumi
    module: github.com/pulumi/pulumi/pkg/v3
    version: v3.260.0
    also: { github.com/pulumi/pulumi/sdk/v3: v3.260.0 }
    packages: [{ pkg: github.com/pulumi/pulumi/pkg/v3/cmd/pulumi, out: pulumi/bin/pulumi }]`);
    const upstream = parseGoMod(
      `module github.com/pulumi/pulumi/pkg/v3\ngo 1.26.6\nreplace github.com/pulumi/pulumi/sdk/v3 => ../sdk\nreplace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e\n`,
    );
    const sdk = parseGoMod("module github.com/pulumi/pulumi/sdk/v3\ngo 1.25\n");
    const out = renderWrapperGoMod(m.artifacts[0], [upstream, sdk]);
    assert.doesNotMatch(out, /\.\.\/sdk/);
    assert.match(out, /\tgithub\.com\/atotto\/clipboard => github\.com\/tgummerer\/clipboard v0\.0\.0-20241001131231-d02d263e614e\n/);
    assert.match(out, /\tgithub\.com\/pulumi\/pulumi\/sdk\/v3 v3\.260\.0\n/);
    assert.match(out, /\ngo 1\.26\.6\n/);
  });

  it("derives staging versions and the highest go line", () => {
    assert.equal(stagingVersion("v1.34.4"), "v0.34.4");
    assert.throws(() => stagingVersion("v2.0.0"));
    assert.equal(maxGoVersion(["1.24.0", "1.26.6", undefined, "1.25"]), "1.26.6");
  });
});

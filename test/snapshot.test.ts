// Snapshots on recorded node outputs (test/fixtures/snapshot/two-node.raw.json, read from a healthy
// reference lab): canonical form, reproducibility across what varies between builds, and every diff kind.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import type { Lab } from "../core/index.ts";
import { loadLab } from "../scripts/lab-file.ts";
import { canonicalize, type Snapshot } from "../scripts/snapshot/canonical.ts";
import type { RawSnapshot } from "../scripts/snapshot/collect.ts";
import { snapshotYaml } from "../scripts/snapshot/command.ts";
import { checkSnapshot, diffSnapshots, SnapshotError } from "../scripts/snapshot/diff.ts";

const root = path.join(import.meta.dirname, "..");
const fixtures = path.join(import.meta.dirname, "fixtures/snapshot");
const loaded = loadLab(path.join(root, "labs/two-node.yaml"));
const lab: Lab = loaded.ok ? loaded.lab : assert.fail();
const recorded: RawSnapshot = JSON.parse(fs.readFileSync(path.join(fixtures, "two-node.raw.json"), "utf8"));
const raw = (): RawSnapshot => structuredClone(recorded);

/** Every occurrence of each key replaced by its value, in every read of the raw snapshot. */
function rewrite(r: RawSnapshot, swaps: Record<string, string>): RawSnapshot {
  const swap = (text: string) => Object.entries(swaps).reduce((t, [from, to]) => t.split(from).join(to), text);
  for (const n of Object.values(r.nodes)) for (const k of Object.keys(n)) n[k] = swap(n[k]);
  for (const k of Object.keys(r.api) as (keyof RawSnapshot["api"])[]) r.api[k] = swap(r.api[k]);
  return r;
}

test("the recorded healthy lab canonicalises to the reviewed snapshot file", () => {
  const text = snapshotYaml(canonicalize(lab, raw()));
  const file = path.join(fixtures, "two-node.snapshot.yaml");
  if (process.env.K8SLAB_UPDATE_SNAPSHOTS === "1") fs.writeFileSync(file, text);
  assert.equal(text, fs.readFileSync(file, "utf8"));
  // Nothing that varies between builds is left in it.
  assert.doesNotMatch(text, /172\.30\.\d+\.(?!0\/|1\/|0 |1 )\d+/, "no pod IP");
  assert.doesNotMatch(text, /KUBE-SEP-[A-Z0-9]{16}/, "no KUBE-SEP hash");
  assert.doesNotMatch(text, /(?<!52:54:00:)\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b/, "no VTEP MAC");
  assert.match(text, /<node2 VTEP> dst 192\.168\.0\.22 self permanent/);
  assert.match(text, /--to-destination <pod default\/business-manager>:80/);
});

test("two healthy builds give the same snapshot: other pod IPs and placement, VTEP MACs, ClusterIPs, KUBE-SEP hashes", () => {
  const other = rewrite(raw(), {
    // Pods swapped between nodes and renumbered, CoreDNS too.
    "172.30.1.6": "172.30.2.16",
    "172.30.2.5": "172.30.1.15",
    "172.30.1.8": "172.30.1.18",
    "765d9cc4b5": "5f7c9d8b6a",
    // flanneld picks new VTEP MACs; the API server another ClusterIP; kube-proxy's hashes follow the pod IPs.
    "32:55:7a:70:74:2a": "de:ad:be:ef:00:01",
    "2e:04:58:a8:3a:9b": "de:ad:be:ef:00:02",
    "10.254.196.65": "10.254.77.12",
    "KUBE-SEP-3N7CDVBBKT43YGWL": "KUBE-SEP-AAAAAAAAAAAAAAAA",
    "KUBE-SEP-BTPL74N5IK4JBSQK": "KUBE-SEP-BBBBBBBBBBBBBBBB",
  });
  other.takenAt = "2030-01-01T00:00:00.000Z";
  assert.deepEqual(diffSnapshots(canonicalize(lab, raw()), canonicalize(lab, other)), []);
});

/** The change a hand-made fault leaves in the recorded reads, and what diff says of it. */
function changesAfter(edit: (r: RawSnapshot) => void) {
  const changed = raw();
  edit(changed);
  return diffSnapshots(canonicalize(lab, raw()), canonicalize(lab, changed));
}

test("diff names each kind of change at its tier, with what it means", () => {
  const fdb = changesAfter((r) => (r.nodes.node2.fdb = "[]"));
  assert.deepEqual(
    fdb.map((c) => [c.tier, c.key, c.meaning]),
    [["flannel", "node2 fdb", "node2: no FDB entry for node1's VTEP: cross-node pod traffic has no tunnel endpoint"]],
  );
  assert.deepEqual(fdb[0].removed, ["<node1 VTEP> dst 192.168.0.21 self permanent"]);

  const mtu = changesAfter(
    (r) =>
      (r.nodes.node1.links = r.nodes.node1.links.replace(
        '"ifname":"flannel.1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1450',
        '"ifname":"flannel.1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1400',
      )),
  );
  assert.deepEqual(
    mtu.map((c) => [c.tier, c.key]),
    [["flannel", "node1 device"]],
  );
  assert.match(mtu[0].meaning, /MTU is 1400 \(was 1450\): a mismatch .* stalls large transfers/);

  const rule = changesAfter(
    (r) =>
      (r.nodes.node1.nat = r.nodes.node1.nat
        .split("\n")
        .filter((l) => !/-A KUBE-SERVICES .*default\/business-manager:http cluster IP/.test(l))
        .join("\n")),
  );
  assert.deepEqual(
    rule.map((c) => [c.tier, c.key]),
    [["services", "node1 nat"]],
  );
  assert.match(
    rule[0].meaning,
    /^node1: kube-proxy's or flannel's NAT rules changed in KUBE-SERVICES \(default\/business-manager:http\): traffic those rules rewrote/,
  );

  const corefile = changesAfter((r) => (r.api.coredns = r.api.coredns.replace("cache 30", "cache 300")));
  assert.deepEqual(
    corefile.map((c) => [c.tier, c.key, c.removed, c.added]),
    [["dns", "Corefile", ["    cache 30"], ["    cache 300"]]],
  );

  const forwarding = changesAfter((r) => (r.nodes.node2.sysctls = r.nodes.node2.sysctls.replace("ip_forward = 1", "ip_forward = 0")));
  assert.match(forwarding[0].meaning, /^node2: the node no longer forwards/);

  const neighbour = changesAfter((r) => (r.nodes.node1.neighbours = "[]"));
  assert.match(neighbour[0].meaning, /^node1: no neighbour entry for node2's VTEP/);

  const route = changesAfter(
    (r) => (r.nodes.node2.routes = JSON.stringify(JSON.parse(r.nodes.node2.routes).filter((x: { dev: string }) => x.dev !== "flannel.1"))),
  );
  assert.deepEqual(
    route.map((c) => [c.tier, c.key]),
    [["flannel", "node2 routes"]],
  );
  assert.match(route[0].meaning, /^node2: no route to 172\.30\.1\.0\/24 over the overlay/);

  const endpoints = changesAfter((r) => {
    const slices = JSON.parse(r.api.endpointslices);
    for (const s of slices.items) if (s.metadata.labels["kubernetes.io/service-name"] === "data-product") s.endpoints = s.endpoints.slice(1);
    r.api.endpointslices = JSON.stringify(slices);
  });
  assert.deepEqual(
    endpoints.map((c) => [c.tier, c.key]),
    [["services", "default/data-product endpoints"]],
  );

  const host = changesAfter((r) => (r.api.ingresses = r.api.ingresses.replace('"host": "k8s.test.com"', '"host": "shop.test.com"')));
  assert.deepEqual(
    host.map((c) => [c.tier, c.key]),
    [["ingress", "objects"]],
  );

  const kubelet = changesAfter((r) => (r.nodes.node2.kubelet = "Kubernetes v1.35.0\n"));
  assert.deepEqual(
    kubelet.map((c) => [c.tier, c.key, c.added]),
    [["versions", "node2 kubelet", ["Kubernetes v1.35.0"]]],
  );

  const gone = changesAfter((r) => (r.nodes.node2.links = r.nodes.node2.links.replace('"ifname":"flannel.1"', '"ifname":"flannel.9"')));
  assert.ok(gone.some((c) => c.key === "node2 device" && c.added[0] === "no flannel.1"));
});

test("a file that is not a snapshot of this lab in this format is refused", () => {
  const s = canonicalize(lab, raw());
  assert.throws(
    () => checkSnapshot({ kind: "something" }, "x.yaml", "two-node"),
    (e: Error) => e instanceof SnapshotError && /not a k8slab snapshot/.test(e.message),
  );
  assert.throws(() => checkSnapshot({ ...s, format: 0 }, "x.yaml", "two-node"), /snapshot format 0, this k8slab writes 1/);
  assert.throws(() => checkSnapshot(s, "x.yaml", "three-node"), /a snapshot of lab "two-node", not of "three-node"/);
  assert.equal(checkSnapshot(s, "x.yaml", "two-node"), s);
});

test("k8slab diff of two files: exit 0 when equal, 1 on drift (grouped by tier), 2 on what is not a snapshot of the lab", (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-diff-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, s: Snapshot | string) => {
    fs.writeFileSync(path.join(dir, name), typeof s === "string" ? s : snapshotYaml(s));
    return path.join(dir, name);
  };
  const base = write("base.yaml", canonicalize(lab, raw()));
  const broken = raw();
  broken.nodes.node2.fdb = "[]";
  const drifted = write("now.yaml", canonicalize(lab, broken));
  const k8slab = (...args: string[]) =>
    spawnSync(process.execPath, [path.join(root, "scripts/bin/k8slab.mjs"), ...args], { cwd: root, encoding: "utf8", timeout: 30_000 });

  assert.equal(k8slab("diff", base, base).status, 0);
  const r = k8slab("diff", base, drifted, "--junit", path.join(dir, "diff.xml"));
  assert.equal(r.status, 1, r.stderr);
  assert.match(
    r.stdout,
    /: 1 change\n\nflannel\n {2}node2 fdb: node2: no FDB entry for node1's VTEP: cross-node pod traffic has no tunnel endpoint\n {4}- <node1 VTEP> dst 192\.168\.0\.21 self permanent\n$/,
  );
  assert.match(fs.readFileSync(path.join(dir, "diff.xml"), "utf8"), /tests="8" failures="1"/);
  const json = JSON.parse(k8slab("diff", base, drifted, "--json").stdout);
  assert.deepEqual(json.changes[0].removed, ["<node1 VTEP> dst 192.168.0.21 self permanent"]);

  const notSnapshot = k8slab("diff", write("lab.yaml", fs.readFileSync(path.join(root, "labs/two-node.yaml"), "utf8")), base);
  assert.equal(notSnapshot.status, 2);
  assert.match(notSnapshot.stderr, /not a k8slab snapshot/);
  const otherLab = k8slab("diff", base, base, "--lab", "test/fixtures/labs/valid-minimal.yaml");
  assert.equal(otherLab.status, 2);
  assert.match(otherLab.stderr, /a snapshot of lab "two-node", not of "mini"/);
});

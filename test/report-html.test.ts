// The HTML page of a probe run, drawn from the recorded output alone (the probes' recordings, and the
// live values read through the same recordings): every node, tier, hop, pod, Service and VTEP MAC the
// fixture holds, coloured by verdict, self-contained; and, where Debian's Chromium is installed, the
// same page in a real headless browser without a console error. The live lab's page: e2e/container-lab.e2e.ts.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { loadLab } from "../scripts/lab-file.ts";
import { TIER_IDS } from "../scripts/probes/contract.ts";
import { runProbes } from "../scripts/probes/runner.ts";
import { renderProbeHtml } from "../scripts/report/html.ts";
import { readTopology } from "../scripts/report/live.ts";
import { type Recording, replay } from "./fixtures/probes/replay.ts";
import { faults, healthy, withFault } from "./fixtures/probes/scenarios.ts";
import { chromiumBinary, chromiumDom, type PageValues, pageProblems } from "./report-page.ts";

const loaded = loadLab(path.join(import.meta.dirname, "../labs/two-node.yaml"));
const lab = loaded.ok ? loaded.lab : assert.fail();
const chromium = chromiumBinary();

/** The values the page must draw, read from the fixture's files themselves (not through the page's own reader). */
const fixture = (file: string) => fs.readFileSync(path.join(import.meta.dirname, "fixtures/probes/healthy", file), "utf8");
const rows = (file: string) =>
  fixture(file)
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split("\t"));
const VALUES: PageValues = {
  nodes: lab.nodes.map((n) => n.name),
  pods: rows("kubectl-pods-all.txt")
    .filter(([, , , hostNetwork]) => hostNetwork !== "true")
    .map(([name, ip]) => ({ name, ip })),
  services: rows("kubectl-services-all.txt")
    .filter(([namespace, , clusterIP]) => clusterIP !== "None" && ["default", "kube-system", "k8slab-probe"].includes(namespace))
    .map(([namespace, name, clusterIP]) => ({ namespace, name, clusterIP })),
  vtepMacs: Object.fromEntries(lab.nodes.map((n) => [n.name, JSON.parse(fixture(`${n.name}-flannel-link.json`))[0].address])),
};

/** The page `probe --html` writes for a run on these recordings: the report, then the live values read through them. */
async function pageOf(recordings: Recording[]) {
  const access = replay(recordings);
  const report = await runProbes(lab, access);
  const live = await readTopology(lab, access);
  assert.deepEqual(access.unmatched, [], "every command has a recording");
  return { report, html: renderProbeHtml(report, lab, live) };
}

test("the fixture's values, as the page must draw them", () => {
  assert.equal(VALUES.pods.length, 10, "every pod but the ingress controller (host network)");
  assert.ok(VALUES.pods.some((p) => p.name === "toolbox-7xk2p" && p.ip === "172.30.1.4"));
  assert.deepEqual(
    VALUES.services.map((s) => `${s.namespace}/${s.name} ${s.clusterIP}`),
    ["default/business-manager 10.254.83.121", "default/data-product 10.254.41.17", "default/kubernetes 10.254.0.1", "kube-system/kube-dns 10.254.0.2"],
  );
  assert.deepEqual(VALUES.vtepMacs, { node1: "6e:2b:7f:0c:11:a1", node2: "9a:41:d3:5e:07:c2" });
});

test("a probe run's page: every node, tier, hop, pod, Service and VTEP MAC of the recording, coloured by verdict, nothing fetched from elsewhere", async () => {
  const { report, html } = await pageOf(withFault(faults.corednsScaledToZero));
  assert.deepEqual(
    report.results.map((r) => r.verdict),
    ["pass", "pass", "pass", "pass", "pass", "fail", "pass", "pass", "blocked"],
  );
  assert.deepEqual(pageProblems(html, report, VALUES), []);
  const all = await pageOf(healthy);
  assert.deepEqual(pageProblems(all.html, all.report, VALUES), [], "the healthy run's page");
  for (const t of TIER_IDS) assert.match(html, new RegExp(`<details id="tier-${t}"`), t);
  assert.doesNotMatch(html, /<(script|link|img)[^>]+(src|href)=/i, "no external resource");
  // Nothing drawn past the drawing's edge (the reference lab's four Services once were).
  const [, svgWidth] = /<svg [^>]*viewBox="0 0 (\d+) \d+"/.exec(html) ?? assert.fail("an svg");
  for (const [, x, w] of html.matchAll(/<rect x="(\d+)" y="\d+" width="(\d+)"/g))
    assert.ok(Number(x) + Number(w) <= Number(svgWidth), `a box ends at ${Number(x) + Number(w)} > ${svgWidth}`);
});

test("the page check fails on a page that lacks what the run and the lab show", async () => {
  const { report, html } = await pageOf(withFault(faults.corednsScaledToZero));
  // Drawn without the live values (as the old test's hard-coded ones did not match the recording).
  assert.deepEqual(
    pageProblems(renderProbeHtml(report, lab, {}), report, VALUES)
      .map((p) => p.split(" not drawn")[0])
      .sort(),
    [
      ...VALUES.pods.map((p) => `pod ${p.name}`),
      ...VALUES.services.map((s) => `Service ${s.namespace}/${s.name}`),
      ...lab.nodes.map((n) => `${n.name}'s VTEP MAC`),
    ].sort(),
  );
  // The failed tier drawn as a passing one, and a hop's detail that is not the run's.
  const wrong = html
    .replace(/<details id="tier-dns" style="border-color:(#\w+)" open>/, '<details id="tier-dns" style="border-color:#2e7d32">')
    .replace("10.254.0.2:53 -&#62; no ready CoreDNS endpoint", "10.254.0.2:53 -&#62; coredns-7d9b8c6f5-2mhzq");
  assert.deepEqual(pageProblems(wrong, report, VALUES), [
    "tier dns (fail) is not open",
    'a hop of dns not shown: "✗ Service kube-system/kube-dns: 10.254.0.2:53 -> no ready CoreDNS endpoint"',
    'two verdicts share a colour: {"pass":"#2e7d32","fail":"#2e7d32","blocked":"#757575"}',
  ]);
});

test("Chromium renders the page: every node, tier, hop, pod, Service and VTEP MAC of the recording in the DOM, no console error", {
  skip: chromium ? false : "no chromium (apt-get install chromium; the live lab's page is checked in e2e/container-lab.e2e.ts, where it is required)",
}, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-html-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { report, html } = await pageOf(withFault(faults.corednsScaledToZero));
  const file = path.join(dir, "probe.html");
  fs.writeFileSync(file, html);
  const r = chromiumDom(chromium!, file, dir);
  assert.equal(r.status, 0, r.log.slice(-2000));
  assert.deepEqual(pageProblems(r.dom, report, VALUES), []);
  assert.doesNotMatch(r.log, /CONSOLE|Uncaught/, "the page's script logs nothing and throws nothing");
});

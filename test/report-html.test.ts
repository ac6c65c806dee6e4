// The HTML page of a probe run: every node and tier drawn, coloured by verdict, self-contained; and,
// where Debian's Chromium is installed, rendered by a real headless browser without a console error.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { loadLab } from "../scripts/lab-file.ts";
import { TIER_IDS } from "../scripts/probes/contract.ts";
import { runProbes } from "../scripts/probes/runner.ts";
import { renderProbeHtml } from "../scripts/report/html.ts";
import { replay } from "./fixtures/probes/replay.ts";
import { faults, healthy, withFault } from "./fixtures/probes/scenarios.ts";

const loaded = loadLab(path.join(import.meta.dirname, "../labs/two-node.yaml"));
const lab = loaded.ok ? loaded.lab : assert.fail();
const live = {
  vtepMac: { node1: "b2:98:9e:85:b1:97", node2: "3a:8e:4d:0c:a7:69" },
  pods: [
    { name: "toolbox-m685f", ip: "172.30.1.5", node: "node1" },
    { name: "toolbox-6fjmx", ip: "172.30.2.4", node: "node2" },
  ],
  services: [
    { namespace: "default", name: "business-manager", clusterIP: "10.254.70.70", ports: "80/TCP" },
    { namespace: "default", name: "data-product", clusterIP: "10.254.214.96", ports: "50051/TCP" },
    { namespace: "default", name: "kubernetes", clusterIP: "10.254.0.1", ports: "443/TCP" },
    { namespace: "kube-system", name: "kube-dns", clusterIP: "10.254.0.2", ports: "53/UDP 53/TCP" },
  ],
};
const chromium = ["chromium", "chromium-browser"].find((b) => spawnSync(b, ["--version"]).status === 0);

test("a probe run's page: every node and tier, coloured by verdict, nothing fetched from elsewhere", async () => {
  const report = await runProbes(lab, replay(withFault(faults.corednsScaledToZero)));
  const html = renderProbeHtml(report, lab, live);
  for (const n of lab.nodes) assert.match(html, new RegExp(`id="node-${n.name}"`));
  for (const t of TIER_IDS) assert.match(html, new RegExp(`<details id="tier-${t}"`), t);
  assert.match(html, /b2:98:9e:85:b1:97/, "live values are drawn");
  assert.match(html, /<details id="tier-dns" style="border-color:#c62828" open>/, "a failed tier is red and open");
  assert.doesNotMatch(html, /<(script|link|img)[^>]+(src|href)=/i, "no external resource");
  // Nothing drawn past the drawing's edge (the reference lab's four Services once were).
  const [, svgWidth] = /<svg [^>]*viewBox="0 0 (\d+) \d+"/.exec(html) ?? assert.fail("an svg");
  for (const [, x, w] of html.matchAll(/<rect x="(\d+)" y="\d+" width="(\d+)"/g))
    assert.ok(Number(x) + Number(w) <= Number(svgWidth), `a box ends at ${Number(x) + Number(w)} > ${svgWidth}`);
});

test("Chromium renders the page: every node and tier in the DOM, no console error", {
  skip: chromium ? false : "no chromium (apt-get install chromium)",
}, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-html-"));
  try {
    const file = path.join(dir, "probe.html");
    fs.writeFileSync(file, renderProbeHtml(await runProbes(lab, replay(healthy)), lab, live));
    const r = spawnSync(
      chromium!,
      [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        `--user-data-dir=${path.join(dir, "profile")}`,
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=2000",
        "--dump-dom",
        `file://${file}`,
      ],
      { encoding: "utf8", timeout: 60_000 },
    );
    assert.equal(r.status, 0, r.stderr.slice(-2000));
    for (const n of lab.nodes) assert.match(r.stdout, new RegExp(`id="node-${n.name}"`));
    for (const t of TIER_IDS) assert.match(r.stdout, new RegExp(`id="tier-${t}"`));
    assert.doesNotMatch(r.stderr, /CONSOLE|Uncaught/, "the page's script logs nothing and throws nothing");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

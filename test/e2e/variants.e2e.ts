// Each flannel backend (with iptables) and each kube-proxy mode (with vxlan) on real VMs: `up` (timed,
// every tier passing at its end), `bench --runs 3`, one fault the probes must name at its hop, then
// `down`. Prints the comparison table for docs/variants.md. Each variant as the tests' own lab
// (e2e-<its name>, own-lab.ts). Not in CI (four labs built one after another): `npm run test:e2e:variants`
// (K8SLAB_E2E_VARIANTS=host-gw,udp for some).
import "../../scripts/quiet-bash.ts";
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import type { Lab } from "../../core/index.ts";
import type { BenchReport } from "../../scripts/bench/bench.ts";
import { percentile } from "../../scripts/bench/bench.ts";
import { labStatus } from "../../scripts/machines/lab.ts";
import type { SshEndpoint } from "../../scripts/machines/spec.ts";
import { sshRun } from "../../scripts/machines/ssh.ts";
import type { ProbeReport } from "../../scripts/probes/types.ts";
import { ownLab } from "./own-lab.ts";
import { assertExited0, k8slab, ownRunsAndLabs, secsSince } from "./reference-lab.ts";

interface Variant {
  file: string;
  /** A command on node1 that breaks the variant's own path, the tier and hop the probes must name, and what undoes it. */
  fault: (lab: Lab) => { run: string; tier: string; hop: RegExp; undo: string };
}

const VARIANTS: Record<string, Variant> = {
  "host-gw": {
    file: "labs/variants/host-gw.yaml",
    fault: (lab) => ({
      run: `ip route del ${lab.nodes[1].podSubnet}`,
      tier: "flannel",
      hop: new RegExp(`^${lab.nodes[0].name} route to ${lab.nodes[1].name}'s pods`),
      undo: "systemctl restart flanneld",
    }),
  },
  udp: {
    file: "labs/variants/udp.yaml",
    fault: (lab) => ({
      run: "systemctl stop flanneld",
      tier: "flannel",
      // flannel0 is flanneld's own TUN device (not persistent): it goes with the process, before its socket is checked.
      hop: new RegExp(`^${lab.nodes[0].name} flannel0`),
      undo: "systemctl start flanneld",
    }),
  },
  ipvs: {
    file: "labs/variants/ipvs.yaml",
    fault: () => ({ run: "systemctl stop kube-proxy && ipvsadm -C", tier: "service", hop: /^IPVS \(/, undo: "systemctl start kube-proxy" }),
  },
  nftables: {
    file: "labs/variants/nftables.yaml",
    fault: () => ({
      run: "systemctl stop kube-proxy && nft delete table ip kube-proxy",
      tier: "service",
      hop: /^service-ips \(/,
      undo: "systemctl start kube-proxy",
    }),
  },
};

const only = process.env.K8SLAB_E2E_VARIANTS?.split(",").filter(Boolean);
const chosen = Object.entries(VARIANTS)
  .filter(([n]) => !only || only.includes(n))
  .map(([name, v]) => ({ name, v, ...ownLab(v.file) }));
const rows: string[] = [];

describe("the lab's variants, measured", { skip: process.getuid?.() === 0 ? false : "needs root (namespaces, taps, VMs)" }, () => {
  ownRunsAndLabs(...chosen.map((c) => [c.file]));
  after(() => {
    process.stderr.write(
      `\n| variant | up s | same-node Mbit/s | cross-node Mbit/s | cross/same | HTTP p50/p99 ms same | cross | ClusterIP | ingress | fault named |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n${rows.join("\n")}\n`,
    );
  });

  for (const { name, v, file, lab } of chosen) {
    it(`${name}: up, every tier passes, bench, a fault named at its hop, down`, { timeout: 60 * 60_000 }, async () => {
      const onNode = async (node: string, command: string) => {
        const vm = (await labStatus(lab.name)).nodes.find((n) => n.name === node);
        assert.ok(vm?.ssh);
        return sshRun(vm.ssh as SshEndpoint, command);
      };
      try {
        let t = Date.now();
        const up = await k8slab("up", file);
        const upSeconds = secsSince(t);
        assertExited0(up, `up ${name}`, `${up.stderr}\n${up.stdout}`);
        const bench = await k8slab("bench", file, "--runs", "3", "--json");
        assertExited0(bench, `bench ${name}`, bench.stderr);
        const b = JSON.parse(bench.stdout) as BenchReport;
        const mbps = (i: number) => percentile(b.rows[i].mbps!, 50);
        const ms = (i: number) => `${percentile(b.rows[i].ms!, 50)}/${percentile(b.rows[i].ms!, 99)}`;
        const f = v.fault(lab);
        await onNode(lab.nodes[0].name, f.run);
        t = Date.now();
        const probe = await k8slab("probe", file, "--json", "--tier", f.tier);
        await onNode(lab.nodes[0].name, f.undo);
        const report = JSON.parse(probe.stdout) as ProbeReport;
        const r = report.results[0];
        rows.push(
          `| ${name} | ${upSeconds} | ${mbps(0)} | ${mbps(1)} | ${(mbps(1) / mbps(0)).toFixed(2)} | ${ms(2)} | ${ms(3)} | ${ms(4)} | ${ms(5)} | ${r?.firstBrokenHop?.split(":")[0] ?? "-"} (${secsSince(t)} s) |`,
        );
        assert.equal(r?.verdict, "fail", `${f.tier}: ${r?.verdict}`);
        assert.match(r.hops.find((h) => !h.ok)?.name ?? "", f.hop);
      } finally {
        assert.equal((await k8slab("down", file)).exitCode, 0);
      }
    });
  }
});

// `k8slab bench [LAB] [--runs N] [--json]`: the figures of scripts/bench/bench.ts on the live lab.
import { EXIT } from "../../core/exit.ts";
import { labOrProblems } from "../lab-file.ts";
import { labRunning } from "../machines/lab.ts";
import { liveAccess } from "../probes/live.ts";
import { renderBench, runBench } from "./bench.ts";

export async function benchCommand(labFile: string, opts: { runs?: string; json?: boolean }): Promise<number> {
  const lab = labOrProblems(labFile);
  if (!lab) return EXIT.invalid;
  const runs = opts.runs === undefined ? 3 : Number(opts.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 20) {
    process.stderr.write(`k8slab bench: --runs ${opts.runs}: a whole number from 1 to 20\n`);
    return EXIT.invalid;
  }
  if (lab.nodes.length < 2) {
    process.stderr.write(`k8slab bench: lab ${lab.name} has one node: the comparison needs two\n`);
    return EXIT.invalid;
  }
  if (
    lab.driver.kind === "qemu" &&
    !(await labRunning(
      lab.name,
      lab.netns,
      lab.nodes.map((n) => n.name),
    ))
  ) {
    process.stderr.write(`k8slab bench: lab ${lab.name} is not up (\`npx k8slab up ${labFile}\`)\n`);
    return EXIT.invalid;
  }
  const access = liveAccess(lab);
  try {
    const report = await runBench(lab, access, runs);
    process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : renderBench(report));
    return report.rows.every((r) => (r.mbps ?? r.ms ?? []).length > 0) ? EXIT.ok : EXIT.failed;
  } catch (err) {
    process.stderr.write(`k8slab bench: ${(err as Error).message}\n`);
    return EXIT.failed;
  } finally {
    await access.close();
  }
}

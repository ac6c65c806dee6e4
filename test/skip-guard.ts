// A node:test reporter beside the spec one (package.json's test scripts): every skipped test, with its reason,
// listed at the end; under CI (K8SLAB_CI=1, set by .ci/run) a skip not allowed below fails the run, so a
// test that could not look is never counted as a pass. A skip is allowed by its file and its exact reason.
import path from "node:path";

/** The skips CI accepts, each with why it is not a hole. Keep it short. */
export const ALLOWED_SKIPS: { file: string; reason: string; why: string }[] = [
  {
    file: "test/e2e/lab.e2e.ts",
    reason: "set K8SLAB_E2E_FAULTS=1 to inject the four faults",
    why: "the four injected faults add about 8 minutes to CI's lab run; `npm run test:e2e:lab` runs them, and the 19 scenarios (three of them in CI) break each tier on purpose",
  },
];

interface SkipEvent {
  type: string;
  data: { name: string; file?: string; skip?: string | boolean };
}

export function isAllowed(file: string | undefined, reason: string | boolean | undefined): boolean {
  const rel = file ? path.relative(process.cwd(), file) : "";
  return ALLOWED_SKIPS.some((a) => a.file === rel && a.reason === reason);
}

export default async function* skipGuard(source: AsyncIterable<SkipEvent>): AsyncGenerator<string> {
  const skipped: { line: string; allowed: boolean }[] = [];
  for await (const ev of source) {
    if (ev.type !== "test:pass" || ev.data.skip === undefined) continue;
    const { name, file, skip } = ev.data;
    const reason = typeof skip === "string" ? skip : "(no reason given)";
    skipped.push({ line: `${file ? path.relative(process.cwd(), file) : "?"}: ${name}: ${reason}`, allowed: isAllowed(file, skip) });
  }
  if (!skipped.length) return;
  const ci = process.env.K8SLAB_CI === "1";
  const refused = skipped.filter((s) => !s.allowed);
  yield `skipped ${skipped.length}:\n${skipped.map((s) => `  ${s.allowed ? "allowed" : ci ? "REFUSED" : "skipped"}  ${s.line}`).join("\n")}\n`;
  if (ci && refused.length) {
    yield `${refused.length} skip(s) not on test/skip-guard.ts's allow-list: under CI a test that did not run is a failure\n`;
    process.exitCode = 1;
  }
}

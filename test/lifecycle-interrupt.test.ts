// SIGINT or SIGTERM during a lab's lifecycle: inside Pulumi's step the signal becomes Pulumi's own
// cancel (the step ends its normal way), outside it the run stops at once; either way the lab's lock
// is released and the exit status is 128 + the signal's number (130 for SIGINT, 143 for SIGTERM). A
// child process per case (signals are process-wide).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";

const lifecycle = path.join(import.meta.dirname, "..", "scripts", "lifecycle.ts");

/** Runs `body` (the code inside withLabLock's callback, `interrupt` in scope) and signals it once it says "working". */
async function interrupted(body: string, signal: NodeJS.Signals) {
  const run = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-run-"));
  const script = `
    const { withLabLock } = await import(${JSON.stringify(lifecycle)});
    const code = await withLabLock({ name: "mini" }, "up", async (interrupt) => { ${body} });
    console.log("returned " + code);
    process.exitCode = code;`;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { env: { ...process.env, K8SLAB_RUN: run } });
  let out = "";
  child.stdout.on("data", (d) => {
    out += d;
    if (/^working$/m.test(out) && !child.killed) child.kill(signal);
  });
  child.stderr.on("data", (d) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  const left = fs.readdirSync(run);
  fs.rmSync(run, { recursive: true, force: true });
  return { code, out, left };
}

for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  test(`${signal} during Pulumi's step aborts it, and the run ends its normal way with ${code}`, { timeout: 30_000 }, async () => {
    const r = await interrupted(
      // The timer stands for Pulumi's CLI, which keeps the real run's event loop alive.
      `return interrupt.during(() => new Promise((resolve) => {
         console.log("working");
         const pulumi = setTimeout(() => resolve(0), 20_000);
         interrupt.signal.addEventListener("abort", () => {
           clearTimeout(pulumi);
           setTimeout(() => { console.log("pulumi stopped"); resolve(1); }, 300);
         });
       }));`,
      signal,
    );
    assert.equal(r.code, code, r.out);
    assert.match(r.out, new RegExp(`${signal}: asking Pulumi to stop`));
    assert.match(r.out, new RegExp(`pulumi stopped\nreturned ${code}`), "the step finished before the run returned");
    assert.deepEqual(r.left, [], "no lock or holder file is left");
  });
}

test("a signal outside Pulumi's step stops the run at once, lock released; SIGTERM exits 143", { timeout: 30_000 }, async () => {
  const r = await interrupted(`console.log("working"); await new Promise((r) => setTimeout(r, 20_000)); return 0;`, "SIGTERM");
  assert.equal(r.code, 143, r.out);
  assert.match(r.out, /SIGTERM: stopped/);
  assert.doesNotMatch(r.out, /returned/);
  assert.deepEqual(r.left, []);
});

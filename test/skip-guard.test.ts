// The CI skip guard: a skip on the allow-list passes, any other fails the run under K8SLAB_CI=1 and is only listed otherwise.
import assert from "node:assert/strict";
import path from "node:path";
import { it } from "node:test";
import skipGuard, { ALLOWED_SKIPS } from "./skip-guard.ts";

const allowed = ALLOWED_SKIPS[0];
const events = (skips: { file: string; skip: string }[]) =>
  (async function* () {
    yield { type: "test:pass", data: { name: "ran", file: path.resolve("test/a.test.ts") } };
    for (const s of skips) yield { type: "test:pass", data: { name: "did not run", file: path.resolve(s.file), skip: s.skip } };
  })();

async function run(skips: { file: string; skip: string }[], ci: boolean): Promise<{ out: string; exitCode: typeof process.exitCode }> {
  const saved = { exitCode: process.exitCode, ci: process.env.K8SLAB_CI };
  process.env.K8SLAB_CI = ci ? "1" : "0";
  process.exitCode = undefined;
  let out = "";
  try {
    for await (const s of skipGuard(events(skips))) out += s;
    return { out, exitCode: process.exitCode };
  } finally {
    process.exitCode = saved.exitCode;
    if (saved.ci === undefined) delete process.env.K8SLAB_CI;
    else process.env.K8SLAB_CI = saved.ci;
  }
}

it("under CI, an allowed skip passes and any other fails the run, named with its reason", async () => {
  const ok = await run([{ file: allowed.file, skip: allowed.reason }], true);
  assert.equal(ok.exitCode, undefined);
  assert.match(ok.out, /allowed {2}test\/e2e\/lab\.e2e\.ts: did not run: set K8SLAB_E2E_FAULTS=1/);
  const other = await run([{ file: "test/trace.test.ts", skip: "needs root and tcpdump" }], true);
  assert.equal(other.exitCode, 1);
  assert.match(other.out, /REFUSED {2}test\/trace\.test\.ts: did not run: needs root and tcpdump/);
  // The same reason from another file is not allowed.
  assert.equal((await run([{ file: "test/e2e/room.e2e.ts", skip: allowed.reason }], true)).exitCode, 1);
});

it("outside CI, skips are listed and the run is left alone; no skip, no output", async () => {
  const r = await run([{ file: "test/trace.test.ts", skip: "needs root and tcpdump" }], false);
  assert.equal(r.exitCode, undefined);
  assert.match(r.out, /skipped 1:\n {2}skipped {2}test\/trace\.test\.ts/);
  assert.equal((await run([], true)).out, "");
});

// What a test starts dies with it (test/owned.ts): a process group of its own, ended whole; the
// kernel's parent-death signal when the test's process is SIGKILLed; its groups stopped and its
// cleanups run when the test's process is told to stop or loses its runner; what a test that timed
// out started, stopped as it times out. Each case beside a control without it, where what was started
// outlives (or would outlive) its test: the check can fail. Real processes (sleep), each ended here
// by its own pid.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { spawnOwned } from "./owned.ts";

const OWNED = path.join(import.meta.dirname, "owned.ts");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "k8slab-owned-"));
/** Every pid a case here started, directly or through its helpers: ended after, whatever happened. */
const started = new Set<number>();
after(() => {
  for (const pid of started) if (alive(pid)) process.kill(pid, "SIGKILL");
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Running, not a zombie (a sleeper whose parent died is reaped by whoever adopts it, maybe later). */
function alive(pid: number): boolean {
  try {
    return !/^[ZX]$/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "")[0]);
  } catch {
    return false;
  }
}
const pgidOf = (pid: number) =>
  Number(
    fs
      .readFileSync(`/proc/${pid}/stat`, "utf8")
      .replace(/^.*\) /, "")
      .split(" ")[2],
  );
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Waits (up to seconds) until pid is gone; whether it went. */
async function gone(pid: number, seconds = 10): Promise<boolean> {
  for (const end = Date.now() + seconds * 1000; Date.now() < end; await sleep(100)) if (!alive(pid)) return true;
  return !alive(pid);
}
/** Lines of a child's stdout as they come, and a wait for one that matches. */
function lines(child: ChildProcess) {
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr?.on("data", (d) => (out += d));
  return {
    out: () => out,
    async wait(re: RegExp, seconds = 30): Promise<RegExpExecArray> {
      for (const end = Date.now() + seconds * 1000; Date.now() < end; await sleep(50)) {
        const m = re.exec(out);
        if (m) return m;
      }
      assert.fail(`no ${re} within ${seconds} s in:\n${out}`);
    },
  };
}

/**
 * A stand-in for a test file's process: starts `sleep 300` (owned, or plainly detached for the control),
 * registers a cleanup that writes `marker`, prints the sleeper's pid, then idles.
 */
const testProcess = (owned: boolean, marker: string) => `
  const fs = await import("node:fs");
  const { spawn } = await import("node:child_process");
  const { spawnOwned, atAbnormalEnd } = await import(${JSON.stringify(OWNED)});
  const pid = ${owned} ? spawnOwned("sleep", ["300"], { stdio: "ignore" }).pid : spawn("sleep", ["300"], { detached: true, stdio: "ignore" }).pid;
  if (${owned}) atAbnormalEnd(() => fs.writeFileSync(${JSON.stringify(marker)}, "cleaned up"));
  console.log("sleeper " + pid);
  setInterval(() => {}, 1000);`;
const node = (script: string) => spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });

test("an owned process leads a process group of its own, and stop ends the whole group, what it started too", { timeout: 30_000 }, async () => {
  const o = spawnOwned("bash", ["-c", "sleep 300 & echo $!; wait"], { stdio: ["ignore", "pipe", "ignore"] });
  started.add(o.pid);
  const grandchild = Number((await lines(o.child).wait(/^(\d+)$/m))[1]);
  started.add(grandchild);
  assert.equal(pgidOf(o.pid), o.pid, "its own group");
  assert.equal(pgidOf(grandchild), o.pid, "what it starts is in its group");
  assert.notEqual(pgidOf(o.pid), pgidOf(process.pid), "not the test's group (a terminal's Ctrl-C does not reach it; the test ends it)");
  assert.equal(o.running(), true);
  assert.equal(await o.stop("SIGTERM", 5000), null, "ended by the signal");
  assert.equal(o.running(), false);
  assert.ok(await gone(grandchild), "the grandchild went with the group");
  assert.equal(await o.stop(), null, "stopping again does nothing");
});

test("stop's first signal to the leader alone (a k8slab run: Pulumi's processes are not signalled behind its back), the group SIGKILLed once it exits", {
  timeout: 30_000,
}, async () => {
  for (const firstSignalTo of ["leader", "group"] as const) {
    const marker = path.join(tmp, `first-signal-${firstSignalTo}`);
    // The leader ends on SIGTERM; its child notes a SIGTERM if one reaches it, and otherwise waits.
    const ready = `${marker}.ready`;
    const child = `trap 'echo TERM >> ${marker}; exit 0' TERM; : > ${ready}; sleep 300 & wait`;
    // In the control the leader waits for its child, so the group's SIGKILL cannot beat the child's trap under load.
    const onTerm = firstSignalTo === "group" ? "wait; exit 0" : "exit 0";
    const o = spawnOwned("bash", ["-c", `trap '${onTerm}' TERM; bash -c "${child}" & echo $!; wait`], {
      firstSignalTo,
      stdio: ["ignore", "pipe", "ignore"],
    });
    started.add(o.pid);
    const grandchild = Number((await lines(o.child).wait(/^(\d+)$/m))[1]);
    started.add(grandchild);
    // Its trap is set (under load a fixed pause was not always enough: the control then failed).
    for (const until = Date.now() + 10_000; !fs.existsSync(ready) && Date.now() < until; ) await sleep(50);
    assert.ok(fs.existsSync(ready), "the child set its trap");
    await o.stop("SIGTERM", 5000);
    assert.ok(await gone(grandchild), "nothing of the group is left");
    assert.equal(
      fs.existsSync(marker),
      firstSignalTo === "group",
      firstSignalTo === "leader" ? "the child saw no SIGTERM" : "control: the group's SIGTERM reached the child",
    );
  }
});

test("SIGKILL of the test's process: the kernel kills what it owned (parent-death signal); a plain detached child outlives it", {
  timeout: 60_000,
}, async () => {
  for (const owned of [true, false]) {
    const proc = node(testProcess(owned, path.join(tmp, "unused")));
    started.add(proc.pid!);
    const sleeper = Number((await lines(proc).wait(/^sleeper (\d+)$/m))[1]);
    started.add(sleeper);
    proc.kill("SIGKILL");
    if (owned) assert.ok(await gone(sleeper), "the owned sleeper died with the process that started it");
    else {
      assert.equal(await gone(sleeper, 3), false, "control: without the death signal the sleeper outlives its test");
      process.kill(sleeper, "SIGKILL");
    }
  }
});

test("its test runner killed: the test's process stops what it owns, runs its cleanups and ends", { timeout: 60_000 }, async () => {
  const marker = path.join(tmp, "runner-gone");
  // The runner: starts the test's process, says its pid, relays its output (as node --test does).
  const runner = node(`
    const { spawn } = await import("node:child_process");
    const t = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", ${JSON.stringify(testProcess(true, marker))}], { stdio: ["ignore", "pipe", "pipe"] });
    console.log("test process " + t.pid);
    t.stdout.pipe(process.stdout);
    setInterval(() => {}, 1000);`);
  started.add(runner.pid!);
  const out = lines(runner);
  const testPid = Number((await out.wait(/^test process (\d+)$/m))[1]);
  started.add(testPid);
  const sleeper = Number((await out.wait(/^sleeper (\d+)$/m))[1]);
  started.add(sleeper);
  runner.kill("SIGKILL");
  assert.ok(await gone(testPid), "the test's process ended once its runner was gone");
  assert.ok(await gone(sleeper), "what it owned went with it");
  assert.equal(fs.readFileSync(marker, "utf8"), "cleaned up");
});

for (const [signal, code] of [
  ["SIGTERM", 143],
  ["SIGINT", 130],
] as const) {
  test(`${signal} to the test's process: what it owns is stopped, its cleanups run, it ends by the signal`, { timeout: 60_000 }, async () => {
    const marker = path.join(tmp, `signal-${signal}`);
    const proc = node(testProcess(true, marker));
    started.add(proc.pid!);
    const sleeper = Number((await lines(proc).wait(/^sleeper (\d+)$/m))[1]);
    started.add(sleeper);
    const exit = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => proc.once("exit", (c, s) => resolve([c, s])));
    proc.kill(signal);
    const [c, s] = await exit;
    assert.ok(s === signal || c === code, `ended by ${signal}: code ${c}, signal ${s}`);
    assert.ok(await gone(sleeper));
    assert.equal(fs.readFileSync(marker, "utf8"), "cleaned up");
  });
}

test("a test that times out has what it started stopped as it times out, not when the file ends; without stopWhenTestEnds it runs on", {
  timeout: 90_000,
}, async () => {
  for (const stops of [true, false]) {
    const result = path.join(tmp, `timeout-${stops}`);
    const file = path.join(tmp, `timeout-${stops}.test.mjs`);
    fs.writeFileSync(
      file,
      `import fs from "node:fs";
      import { it } from "node:test";
      const { spawnOwned, stopWhenTestEnds } = await import(${JSON.stringify(OWNED)});
      if (${stops}) stopWhenTestEnds("SIGTERM", 5000);
      const alive = (pid) => { try { return !/^[ZX]/.test(fs.readFileSync("/proc/" + pid + "/stat", "utf8").replace(/^.*\\) /, "")); } catch { return false; } };
      let pid;
      it("starts a sleeper and times out", { timeout: 500 }, async () => {
        pid = spawnOwned("sleep", ["300"], { stdio: "ignore" }).pid;
        console.log("sleeper " + pid);
        await new Promise((r) => setTimeout(r, 3000));
      });
      it("the next test sees it", async () => {
        for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
        fs.writeFileSync(${JSON.stringify(result)}, alive(pid) ? "alive" : "gone");
        // The control's sleeper, ended here: a child still running keeps this file's process from ending.
        if (alive(pid)) process.kill(pid, "SIGKILL");
      });`,
    );
    // A test run of its own: not a child of this one (node:test's context variable removed).
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const run = spawn(process.execPath, ["--import", "tsx", "--test", "--test-reporter=tap", file], { env, stdio: ["ignore", "pipe", "pipe"] });
    started.add(run.pid!);
    const out = lines(run);
    const sleeper = Number((await out.wait(/sleeper (\d+)/))[1]);
    started.add(sleeper);
    await new Promise((resolve) => run.once("exit", resolve));
    assert.equal(fs.readFileSync(result, "utf8"), stops ? "gone" : "alive", out.out());
    assert.ok(await gone(sleeper));
  }
});

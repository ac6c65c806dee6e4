// The k8slab provider's Command: diff rules, the scripts it runs, and real local runs through create/update/delete.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { commandArgv, commandProvider, diffCommand, scriptFor, unwrapSecrets } from "../infra/provider/provider.ts";

const dir = mkdtempSync(path.join(tmpdir(), "k8slab-provider-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const secret = (value: unknown) => ({ "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", value });
const ep = { host: "127.0.0.1", port: 2221, user: "root", keyFile: "/k/id", knownHostsFile: "/k/known_hosts" };

test("diff: a trigger or connection change replaces, a command change updates, nothing changed is no diff", () => {
  const base = { create: "a", triggers: [1], connection: ep };
  assert.deepEqual(diffCommand(base, { ...base }), { changes: false, replaces: [] });
  assert.deepEqual(diffCommand(base, { ...base, create: "b" }), { changes: true, replaces: [] });
  assert.deepEqual(diffCommand(base, { ...base, triggers: [2] }), { changes: true, replaces: ["triggers"] });
  assert.deepEqual(diffCommand(base, { ...base, connection: { ...ep, port: 2222 } }), { changes: true, replaces: ["connection"] });
  // State holds secrets wrapped; new inputs may arrive plain during preview: same value, no diff.
  assert.deepEqual(diffCommand({ ...base, stdin: secret("key") }, { ...base, stdin: "key" }), { changes: false, replaces: [] });
});

test("secrets are unwrapped at any depth", () => {
  assert.deepEqual(unwrapSecrets({ a: [secret({ b: secret("x") })] }), { a: [{ b: "x" }] });
});

test("scripts run strict, with the environment exported and quoted", () => {
  assert.equal(scriptFor("echo $A", { A: "it's" }), "set -euo pipefail\nexport A='it'\\''s'\necho $A");
  assert.deepEqual(commandArgv("true"), ["bash", "-c", "true"]);
  const argv = commandArgv("echo 'x'", ep);
  assert.equal(argv[0], "ssh");
  assert.deepEqual(argv.slice(-4, -1), ["root", "--", "127.0.0.1"]);
  assert.ok(argv.includes("/k/id"));
  assert.equal(argv.at(-1), `bash -c 'echo '\\''x'\\'''`);
});

test("create, update and delete run their commands here, with stdin and environment", async () => {
  const file = path.join(dir, "f");
  const inputs = {
    create: 'cat > "$F"; echo created',
    update: 'cat > "$F"; echo updated',
    delete: 'rm "$F"',
    environment: { F: file },
    stdin: secret("content-1"),
  };
  const created = await commandProvider.create!("urn", inputs);
  assert.match(created.id, /^[0-9a-f]{16}$/);
  assert.equal(created.outs.stdout, "created\n");
  assert.deepEqual(created.outs.stdin, inputs.stdin, "a secret input stays wrapped in state");
  assert.equal(readFileSync(file, "utf8"), "content-1");
  const updated = await commandProvider.update!(created.id, "urn", created.outs, { ...inputs, stdin: "content-2" });
  assert.equal(updated.outs!.stdout, "updated\n");
  assert.equal(readFileSync(file, "utf8"), "content-2");
  await commandProvider.delete!(created.id, "urn", updated.outs);
  assert.equal(existsSync(file), false);
});

test("a failing command names the step, the place, the exit and the output; logging none hides the output", async () => {
  await assert.rejects(commandProvider.create!("urn", { create: "echo visible >&2; exit 3" }), (e: Error) => {
    assert.match(e.message, /^create on this machine exited 3: echo visible >&2; exit 3\nvisible$/);
    return true;
  });
  await assert.rejects(commandProvider.create!("urn", { create: 'echo "$K"; false', environment: { K: "secret-key" }, logging: "none" }), (e: Error) => {
    assert.doesNotMatch(e.message, /secret-key/);
    assert.match(e.message, /exited 1.*\n\(output hidden: logging none\)/);
    return true;
  });
  await assert.rejects(commandProvider.create!("urn", { create: "sleep 5", timeoutSec: 0.2 }), /timed out after 0.2 s/);
});

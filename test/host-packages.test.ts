// The host package list: parsed from the project's file, and checked against dpkg's own record.
import assert from "node:assert/strict";
import { test } from "node:test";
import { hostPackages, missingHostPackages } from "../scripts/host-packages.ts";

test("the list is the file's package names, comments and blank lines left out", () => {
  assert.deepEqual(hostPackages("# a comment\nqemu-utils  # why\n\nsocat\n"), ["qemu-utils", "socat"]);
  const real = hostPackages();
  for (const p of ["qemu-system-x86", "debootstrap", "socat", "time"]) assert.ok(real.includes(p), p);
});

test("a package dpkg does not know is reported missing; an installed one is not", async () => {
  assert.deepEqual(await missingHostPackages(["coreutils", "k8slab-no-such-package"]), ["k8slab-no-such-package"]);
});

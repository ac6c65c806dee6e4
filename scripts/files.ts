// Small file-system helpers the builders share: hashing a file, removing a build tree, taking a cache lock.
import { createHash } from "node:crypto";
import fs from "node:fs";
import lockfile from "proper-lockfile";
import { $ } from "zx";

export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** rm -rf a build tree, but first unmount anything a failed debootstrap left mounted inside it. */
export async function removeTree(root: string): Promise<void> {
  const mounted = () =>
    fs
      .readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((l) => l.split(" ")[4])
      .filter((m) => m && (m === root || m.startsWith(`${root}/`)));
  for (const m of mounted().reverse()) await $`umount ${m}`.nothrow().quiet();
  const left = mounted();
  if (left.length) throw new Error(`not removing ${root}: still mounted: ${left.join(", ")}`);
  fs.rmSync(root, { recursive: true, force: true });
}

/**
 * Runs fn holding a lock on dir (a lock directory refreshed while held; a crashed holder's goes
 * stale), waiting, and saying once that it waits, while another process holds it.
 */
export async function withDirLock<T>(
  opts: { dir: string; lockfilePath: string; staleMs: number; log: (s: string) => void; holder: string },
  fn: () => Promise<T>,
): Promise<T> {
  fs.mkdirSync(opts.dir, { recursive: true });
  let said = false;
  for (;;) {
    let release: () => Promise<void>;
    try {
      release = await lockfile.lock(opts.dir, { lockfilePath: opts.lockfilePath, stale: opts.staleMs, update: opts.staleMs / 6, realpath: false });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ELOCKED") throw e;
      if (!said) opts.log(`waiting: ${opts.holder} holds ${opts.lockfilePath}`);
      said = true;
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    try {
      return await fn();
    } finally {
      await release().catch(() => undefined);
    }
  }
}

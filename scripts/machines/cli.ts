// Command line of the machine layer, for the Pulumi Machines tier (local.Command) and for people.
// Each subcommand takes its JSON argument inline, from --file PATH, or on stdin; prints one JSON line on stdout;
// progress and notices go to stderr. Exit 0 ok, 2 bad input or preflight (one "field: reason" line each), 1 other.
import fs from "node:fs";
import { EXIT } from "../../core/exit.ts";
import { ensureContainerRootfs, ensureImage, findImage, imageKey, pruneImages } from "./image.ts";
import { labDown, labNetUp, labStatus } from "./lab.ts";
import { ctDown, ctUp } from "./lxc.ts";
import { PreflightError, preflightLab } from "./preflight.ts";
import { detectAccel, vmDown, vmUp } from "./qemu.ts";
import { issueLines, parseLabMachines, SpecError, SshHostSpecSchema } from "./spec.ts";
import { sshHostUp, waitForSsh } from "./ssh.ts";

const USAGE = `usage: tsx scripts/machines/cli.ts COMMAND [JSON | --file PATH | < JSON]

  image [--rebuild] [--prune] [--container]
                                 build the node OS image (the VM's, or the container nodes' rootfs) unless cached
  accel                          which accelerator VMs will use (KVM only if it really boots)
  preflight LAB_MACHINES         check a whole lab ({net: LabNetSpec, machines: MachineSpec[]}) before creating anything
  net-up LAB_NET                 lab namespace + bridge + gateway address + ssh key (LabNetSpec)
  net-down LAB                   remove the whole lab: VMs, containers, namespace, keys, overlays, logs ({lab, netns?})
  vm-up MACHINE [--no-wait]      start a VM (no-op if running with the same spec), wait for ssh (MachineSpec)
  vm-down VM                     stop and remove a VM ({lab, name})
  ct-up MACHINE [--no-wait]      container driver: start a node's LXC container (no-op if running with the same spec), wait for ssh
  ct-down NODE                   stop and remove a container node ({lab, name})
  ssh-up SSH_HOST --lab LAB      ssh driver: wait until an existing host answers ({host, port, user, keyFile})
  ssh-wait ENDPOINT              wait for ssh ({host, port?, user?, keyFile, knownHostsFile, timeoutSec?})
  down LAB_NAME [--keep-logs]    same as net-down, by lab name
  status LAB_NAME                what exists for the lab, as JSON
`;

function flag(args: string[], name: string): boolean {
  const i = args.indexOf(name);
  if (i < 0) return false;
  args.splice(i, 1);
  return true;
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
}

function jsonArg(args: string[]): unknown {
  const file = option(args, "--file");
  const text = file ? fs.readFileSync(file, "utf8") : args[0] !== undefined ? args[0] : fs.readFileSync(0, "utf8");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SpecError([`(input): not JSON: ${(e as Error).message}`]);
  }
}

function print(value: unknown) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  switch (cmd) {
    case "image": {
      if (flag(args, "--prune")) {
        print({ pruned: pruneImages() });
        return EXIT.ok;
      }
      if (flag(args, "--container")) {
        const c = await ensureContainerRootfs({ rebuild: flag(args, "--rebuild") });
        print({ key: c.key, dir: c.dir, rootfs: c.rootfs, reused: c.reused, buildSeconds: c.buildSeconds });
        return EXIT.ok;
      }
      const m = await ensureImage({ rebuild: flag(args, "--rebuild") });
      print({
        key: m.key,
        dir: m.dir,
        kernel: m.kernel,
        initrd: m.initrd,
        rootfs: m.rootfs,
        kernelVersion: m.kernelVersion,
        reused: m.reused,
        buildSeconds: m.buildSeconds,
      });
      return EXIT.ok;
    }
    case "image-key": {
      print({ key: imageKey(), cached: !!findImage() });
      return EXIT.ok;
    }
    case "accel": {
      const m = await ensureImage();
      print(await detectAccel(m.kernel));
      return EXIT.ok;
    }
    case "preflight": {
      const problems = await preflightLab(parseLabMachines(jsonArg(args)));
      if (problems.length) throw new PreflightError(problems);
      print({ ok: true });
      return EXIT.ok;
    }
    case "net-up":
      print(await labNetUp(jsonArg(args)));
      return EXIT.ok;
    case "net-down":
    case "down": {
      const keepLogs = flag(args, "--keep-logs") || process.env.K8SLAB_KEEP_LOGS === "1";
      const ref = cmd === "down" && args[0] && !args[0].startsWith("{") ? { lab: args[0] } : (jsonArg(args) as { lab: string; netns?: string });
      if (!ref?.lab) throw new SpecError(["lab: required"]);
      print(await labDown(ref.lab, { netns: ref.netns, keepLogs }));
      return EXIT.ok;
    }
    case "vm-up": {
      const wait = !flag(args, "--no-wait");
      print(await vmUp(jsonArg(args) as never, { wait }));
      return EXIT.ok;
    }
    case "vm-down": {
      const ref = jsonArg(args) as { lab: string; name: string; netns?: string };
      if (!ref?.lab || !ref?.name) throw new SpecError(["lab, name: required"]);
      await vmDown(ref);
      print({ removed: ref.name });
      return EXIT.ok;
    }
    case "ct-up": {
      const wait = !flag(args, "--no-wait");
      print(await ctUp(jsonArg(args) as never, { wait }));
      return EXIT.ok;
    }
    case "ct-down": {
      const ref = jsonArg(args) as { lab: string; name: string; netns?: string };
      if (!ref?.lab || !ref?.name) throw new SpecError(["lab, name: required"]);
      await ctDown(ref);
      print({ removed: ref.name });
      return EXIT.ok;
    }
    case "ssh-up": {
      const lab = option(args, "--lab");
      if (!lab) throw new SpecError(["--lab: required"]);
      const r = SshHostSpecSchema.safeParse(jsonArg(args));
      if (!r.success) throw new SpecError(issueLines(r.error));
      print(await sshHostUp(lab, r.data));
      return EXIT.ok;
    }
    case "ssh-wait": {
      const r = SshHostSpecSchema.safeParse(jsonArg(args));
      if (!r.success) throw new SpecError(issueLines(r.error));
      const { timeoutSec, knownHostsFile, ...ep } = r.data;
      if (!knownHostsFile) throw new SpecError(["knownHostsFile: required (or use ssh-up --lab LAB)"]);
      print(await waitForSsh({ ...ep, knownHostsFile }, { timeoutSec }));
      return EXIT.ok;
    }
    case "status":
      if (!args[0]) throw new SpecError(["lab: required"]);
      print(await labStatus(args[0]));
      return EXIT.ok;
    default:
      process.stderr.write(USAGE);
      return cmd === undefined || cmd === "help" || cmd === "--help" ? EXIT.ok : EXIT.invalid;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof SpecError || e instanceof PreflightError) {
      for (const p of e.problems) process.stderr.write(`${p}\n`);
      process.exit(EXIT.invalid);
    }
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(EXIT.failed);
  },
);

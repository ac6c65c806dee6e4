// `k8slab up | down | status`: a lab's life, as ordered steps that each report one status line.
import fs, { existsSync } from "node:fs";
import path from "node:path";
import lockfile from "proper-lockfile";
import { $ } from "zx";
import { EXIT, exitOnSignal } from "../core/exit.ts";
import { type Lab, ownsMachines } from "../core/index.ts";
import { labPaths, runRoot } from "../core/paths.ts";
import { ensureHostPackages, missingHostPackages } from "./host-packages.ts";
import { ensureImages, writeLabImages } from "./images/build.ts";
import { ensureContainerdStore, writeContainerdStore } from "./images/store.ts";
import { labOrProblems } from "./lab-file.ts";
import { ensureContainerRootfs, ensureImage } from "./machines/image.ts";
import { labDown, labNetUp, labRunning, labStatus } from "./machines/lab.ts";
import { machineSpecs } from "./machines/lab-machines.ts";
import { netnsExists } from "./machines/labnet.ts";
import { ctUp } from "./machines/lxc.ts";
import { checkApt, checkKernel, hostKernel, kernelNeeds, preflightLab } from "./machines/preflight.ts";
import { vmUp } from "./machines/qemu.ts";
import { parseLabMachines } from "./machines/spec.ts";
import { CERTIFICATES_RENEWED_KEY } from "./pki/catalog.ts";
import { firstToExpire, labCertificates, RENEW_WITHIN_DAYS, renderCertificates } from "./pki/expiry.ts";
import { probeLab } from "./probes/command.ts";
import { renderTerminal } from "./probes/render.ts";
import type { ProbeReport } from "./probes/types.ts";
import {
  apiServerTooSlow,
  failureLines,
  PLUGIN_LOG_ENV,
  pulumiErrorLine,
  pulumiFailures,
  pulumiLogged,
  type RunLog,
  runLogFile,
  teeOutput,
} from "./run-log.ts";
import { claimSignals } from "./signals.ts";
import { readState, recordedFiles } from "./toolchain/bundle.ts";
import { ensureBundleDisk } from "./toolchain/bundle-disk.ts";
import { bundleComplete, ensureToolchain } from "./toolchain/index.ts";
import { bundleBinDir, stateFile } from "./toolchain/paths.ts";
import { readOptionalText, STATE_FILE, writeOutput } from "./user-file.ts";

const say = (line: string) => process.stderr.write(`${line}\n`);

/** A step's failure, already printed with its reason; `exit` says whether it was bad input (2) or failed work (1). */
class StepFailed extends Error {
  constructor(
    readonly step: string,
    readonly exit: number,
  ) {
    super(step);
  }
}

/** How many Pulumi runs `up` makes while every failure is an API server too slow to answer (apiServerTooSlow). */
const PULUMI_RUNS_WHILE_API_SLOW = 3;

/** A failure that is the input's or the host's (preflight): exit 2, each problem on its own line. */
class Refused extends Error {
  constructor(readonly problems: string[]) {
    super(`${problems.length} problem${problems.length === 1 ? "" : "s"} (listed above)`);
  }
}

/** A named step: prints when it starts and how long it took, or why it failed. Checks belong inside it. */
async function step<T>(name: string, run: () => Promise<T>): Promise<T> {
  const started = Date.now();
  say(`• ${name} ...`);
  try {
    const result = await run();
    say(`✓ ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    return result;
  } catch (err) {
    if (err instanceof Refused) for (const p of err.problems) say(`  ${p}`);
    say(`✗ ${name} (${((Date.now() - started) / 1000).toFixed(1)} s): ${(err as Error).message}`);
    throw new StepFailed(name, err instanceof Refused ? EXIT.invalid : EXIT.failed);
  }
}

/**
 * What a signal does to a run: while Pulumi works (`during`), it asks Pulumi to stop (SIGINT to the
 * CLI: running operations finish, the state is written, the stack unlocked) and the run ends through
 * its normal path; at any other moment the run stops at once (the lock is released first).
 */
export interface Interrupt {
  signal: AbortSignal;
  during<T>(work: () => Promise<T>): Promise<T>;
}

/**
 * Runs `fn` holding the lab's lifecycle lock (in its run folder, so a reboot clears it): a second
 * `up` or `down` of the same lab stops at once with who holds it, not minutes later at Pulumi's lock.
 */
export async function withLabLock(lab: Lab, what: string, fn: (interrupt: Interrupt) => Promise<number>): Promise<number> {
  // Beside the lab's run folder, not in it: `down` removes that folder while it holds the lock.
  fs.mkdirSync(runRoot(), { recursive: true });
  const lock = path.join(runRoot(), `${lab.name}.lifecycle`);
  const holderFile = `${lock}.holder`;
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(lock, { realpath: false, stale: 30_000, update: 10_000 });
  } catch {
    const holder = readOptionalText(holderFile, STATE_FILE)?.trim() || "another k8slab";
    say(`k8slab ${what}: lab ${lab.name} is being changed right now (${holder}); wait for it to finish, or stop it`);
    return EXIT.invalid;
  }
  try {
    writeOutput(holderFile, `\`k8slab ${what}\` pid ${process.pid} since ${new Date().toISOString()}\n`);
  } catch (err) {
    await release();
    throw err;
  }
  const unlock = async () => {
    fs.rmSync(holderFile, { force: true });
    await release();
  };
  const controller = new AbortController();
  let inPulumi = false;
  // The exit status of a stopped run: 128 + the first signal's number (130 for SIGINT, 143 for SIGTERM).
  let stoppedBy: NodeJS.Signals | undefined;
  const onSignal = async (signal: NodeJS.Signals) => {
    stoppedBy ??= signal;
    // The first signal inside Pulumi's step asks Pulumi to stop; a second one (or any outside it) stops now.
    if (inPulumi && !controller.signal.aborted) {
      controller.abort();
      return say(`k8slab ${what}: ${signal}: asking Pulumi to stop once its running steps end (its state stays whole); again to stop at once`);
    }
    controller.abort();
    say(`k8slab ${what}: ${signal}: stopped`);
    await unlock();
    process.exit(exitOnSignal(stoppedBy));
  };
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const s of signals) process.on(s, onSignal);
  const unclaim = claimSignals(); // this handler decides, not the CLI's default
  const interrupt: Interrupt = {
    signal: controller.signal,
    async during(work) {
      inPulumi = true;
      try {
        return await work();
      } finally {
        inPulumi = false;
      }
    },
  };
  try {
    const code = await fn(interrupt);
    return stoppedBy ? exitOnSignal(stoppedBy) : code;
  } finally {
    for (const s of signals) process.off(s, onSignal);
    unclaim();
    await unlock();
  }
}

/**
 * A lab Pulumi knows whose namespace or VMs are gone (a host reboot): start them again on their
 * disks, so the cluster on them comes back; Pulumi's state still describes it (the provider cannot
 * read a Command back, so `up` alone would find nothing to do).
 */
async function restartMachines(lab: Lab): Promise<void> {
  const specs = machineSpecs(lab);
  await labNetUp(specs.net);
  await Promise.all(specs.machines.map((m) => (specs.driver === "container" ? ctUp(m) : vmUp(m))));
}

/** The lab's namespace is gone, or one of its VMs is not running. */
const machinesDown = async (lab: Lab) =>
  !(await labRunning(
    lab.name,
    lab.netns,
    lab.nodes.map((n) => n.name),
  ));

export async function up(file: string, opts: { renewCertificates?: boolean } = {}): Promise<number> {
  const lab = labOrProblems(file);
  if (!lab) return EXIT.invalid;
  if (opts.renewCertificates && !(await (await import("./stack.ts")).stackExists(lab))) {
    say(`k8slab certs --renew: lab ${lab.name} is not up; \`k8slab up\` issues new certificates anyway`);
    return EXIT.invalid;
  }
  const what = opts.renewCertificates ? "certs --renew" : "up";
  return withLabLock(lab, what, async (interrupt) => {
    // Every `up` keeps its whole output, Pulumi's stderr and the provider plugin's own life in the lab's log folder.
    const log = teeOutput(runLogFile(labPaths(lab.name).logs, what.replace(/\W+/g, "-")));
    process.env[PLUGIN_LOG_ENV] = log.file;
    try {
      return await upLocked(lab, file, interrupt, opts, log);
    } finally {
      delete process.env[PLUGIN_LOG_ENV];
      log.close();
    }
  });
}

async function upLocked(lab: Lab, file: string, interrupt: Interrupt, opts: { renewCertificates?: boolean }, log: RunLog): Promise<number> {
  // A lab whose last `up` ended green, and whose machines run, is probed from the start, beside the
  // checks below and Pulumi's refresh: when Pulumi then changes nothing, those probes saw the lab as it
  // stands (a second `up` costs the longer of the two, not both); when it changed something, they run
  // again on the result.
  const stopped = ownsMachines(lab) && (await machinesDown(lab));
  const early = !opts.renewCertificates && lastUpGreen(lab) && !stopped ? runProbes(lab) : undefined;
  early?.catch(() => undefined); // a failure is met where the run is awaited, not as an unhandled rejection
  try {
    // Loaded once the probes are on their way: the Automation API takes a second of CPU to load.
    const { openStack, stackExists } = await import("./stack.ts");
    // Before anything is installed, built or created, a host that cannot run the lab is refused with the fix;
    // a lab that is already up holds its own ports and memory, and has shown its kernel will do.
    if (ownsMachines(lab) && !netnsExists(lab.netns)) {
      await step("preflight: root, kernel, LAN routes, ports, memory", async () => {
        // The tools come with the host packages next; each machine's start checks them again.
        const problems = await preflightLab(parseLabMachines(machineSpecs(lab)), { skipTools: true });
        problems.push(...(await checkKernel(kernelNeeds(lab.driver.kind, lab.pods.flannel.backend, lab.services.kubeProxyMode), hostKernel())));
        if ((await missingHostPackages()).length) problems.push(...checkApt());
        if (problems.length) throw new Refused(problems);
      });
    }
    await step("host packages: qemu, debootstrap, socat, ... (scripts/machines/host-packages.txt)", () => ensureHostPackages(say));
    // A fresh machine compiles the bundle for most of an hour: the node image (debootstrap) and the container images
    // made of Debian packages and npm code need none of it and build meanwhile (those that do are skipped, then built).
    const fresh = !(await bundleComplete());
    const nodeImageBuild =
      lab.driver.kind === "qemu"
        ? step("node image: Debian trixie for the VMs", () => ensureImage())
        : lab.driver.kind === "container"
          ? step("node image: Debian trixie rootfs for the container nodes", () => ensureContainerRootfs()).then(() => undefined)
          : Promise.resolve(undefined);
    // Handled here so a failure while the toolchain still builds is not an unhandled rejection; awaited below.
    nodeImageBuild.catch(() => undefined);
    const imagesMeanwhile = fresh ? ensureImages().catch(() => undefined) : undefined;
    try {
      await step("toolchain: the offline bundle", async () => {
        if (!(await ensureToolchain())) throw new Error("the bundle is incomplete (see above); `npx k8slab toolchain` resumes it");
      });
    } finally {
      // Never leave a build running behind a failed step.
      await Promise.allSettled([nodeImageBuild, imagesMeanwhile]);
    }
    const nodeImage = await nodeImageBuild;
    const images = await step("container images: built offline, for containerd", async () => {
      const images = await ensureImages();
      const missing = [
        ...images.skipped.map((s) => `image ${s.name}: ${s.reason}`),
        ...images.failed.map((f) => `image ${f.name} failed: ${f.error}${f.log ? ` (log ${f.log})` : ""}`),
      ];
      if (missing.length) throw new Error(`missing: ${missing.join("; ")}`);
      return writeLabImages(images.images);
    });
    // Container nodes share the host's kernel and unpack natively: they import the archives and take the binaries themselves.
    if (nodeImage) {
      await step("bundle disk: the node binaries on a read-only disk each new VM attaches", async () => {
        if (!(await ensureBundleDisk(recordedFiles(await readState(stateFile())))))
          say("  no bundle disk (the bundle lacks a node binary): each node receives them over ssh");
      });
      const store = await step("containerd store: the images unpacked on the host, a disk each new VM mounts at /var/lib/containerd", async () => {
        const { store, reason } = await ensureContainerdStore(images, nodeImage, say);
        if (!store) say(`  no store (${reason}): each node imports the images over ssh`);
        return store;
      });
      writeContainerdStore(store);
    }
    const restarted = stopped && (await stackExists(lab));
    if (restarted) {
      await step("machines: the lab's VMs are not running (a host reboot?): start them again on their disks", () => restartMachines(lab));
      // Pulumi's refresh reads every cluster object: the API server must answer first, or all of them fail "unreachable".
      await step("cluster: the API server answers again after the restart", () => waitApiServer(lab));
    }
    const stack = await step(`stack: select ${lab.name}`, () => openStack(lab, say));
    if (opts.renewCertificates) {
      // Kept in the stack's config: later `up`s see the same value and issue nothing.
      const at = new Date().toISOString();
      await step(`certificates: renew every leaf (issued ${at}); the units that read them restart`, () =>
        stack.setConfig(`k8slab:${CERTIFICATES_RENEWED_KEY}`, { value: at }),
      );
    }
    fs.rmSync(labPaths(lab.name).lastUp, { force: true }); // written again only when this `up`'s probes pass
    // refresh first: what was changed on the cluster by hand (a workshop's broken Deployment, a
    // scaled-down CoreDNS) is read back and put right, not trusted from the last run's state.
    let pulumi = pulumiFailures();
    const pulumiUp = (what: string) =>
      step(what, () =>
        interrupt.during(() =>
          stack.up({ refresh: true, ...pulumiLogged(log), onEvent: pulumi.onEvent, signal: interrupt.signal }).catch((err: Error) => {
            // The engine's message repeats its whole output; what failed, by resource, is what to show.
            throw new Error(pulumiErrorLine(err, pulumi.failures()));
          }),
        ),
      ).catch((err) => {
        for (const line of failureLines(pulumi.failures())) say(line);
        throw err;
      });
    // Before its refresh each Kubernetes provider asks the API server for its OpenAPI document and gives up after
    // 32 s, and client-go gives a TLS handshake 10 s: an API server still busy (a young lab, a slow host, the probes
    // beside it) makes every cluster object "unreachable". The cluster is slow, not gone: wait until it answers,
    // then run Pulumi again (on a host slowed to x6-x17 the second run still lost one provider's handshake).
    let result: Awaited<ReturnType<typeof stack.up>> | undefined;
    for (let run = 1; !result; run++) {
      try {
        result = await pulumiUp(run === 1 ? "pulumi up: create, update or repair the lab" : "pulumi up: once more, now that the API server answers");
      } catch (err) {
        if (run >= PULUMI_RUNS_WHILE_API_SLOW || interrupt.signal.aborted || !apiServerTooSlow(pulumi.failures())) throw err;
        await early?.catch(() => undefined); // the probes beside it are load on the same API server
        await step("cluster: the API server answers its OpenAPI document again", () => waitApiServer(lab));
        pulumi = pulumiFailures();
      }
    }
    const changes = result.summary.resourceChanges ?? {};
    say(`lab ${lab.name}: ${JSON.stringify(changes)}`);
    if (restarted) await step("cluster: every node and pod Ready again after the restart", () => waitReady(lab));
    // Pulumi changed nothing: the probes run beside it saw the lab as it stands, when they all passed. A tier
    // that did not pass shared the nodes' CPUs with Pulumi's refresh (on a slow host, node1's pressure reached
    // 95 % and DNS answers ran out), so the probes run again alone, and that run is the report.
    const unchanged = Object.entries(changes).every(([op, n]) => op === "same" || !n);
    const earlyRun = early && (await early.catch(() => undefined));
    const standing = unchanged && earlyRun?.report.ok ? earlyRun : undefined;
    if (unchanged && earlyRun && !standing)
      say(`  the probes run beside Pulumi did not all pass (${notPassedOf(earlyRun.report)}): probing again on their own`);
    let report: ProbeReport | undefined;
    try {
      await step(
        standing ? "probes: every network tier, bottom-up (run while Pulumi found nothing to change)" : "probes: every network tier, bottom-up",
        async () => {
          const probed = standing ?? (await runProbes(lab));
          report = probed.report;
          for (const line of probed.lines) say(line);
          if (!report.ok) throw new Error(`${notPassedOf(report)} (the report follows)`);
        },
      );
      writeOutput(labPaths(lab.name).lastUp, `${JSON.stringify({ probes: "pass", at: new Date().toISOString() })}\n`);
    } finally {
      if (report) process.stdout.write(renderTerminal(report, { color: process.stdout.isTTY }));
    }
    return EXIT.ok;
  } catch (err) {
    await early?.catch(() => undefined); // bounded (every tier has a deadline); leaves no ssh session behind
    // A step printed its reason; anything else is said here, never swallowed.
    if (!(err instanceof StepFailed)) say(`✗ ${(err as Error).message}`);
    say(`k8slab up stopped${err instanceof StepFailed ? ` at "${err.step}"` : ""}; once that is fixed, \`npx k8slab up ${file}\` resumes from there`);
    say(`  the whole output: ${log.file}`);
    return err instanceof StepFailed ? err.exit : EXIT.failed;
  }
}

/** Every tier's probe, its progress lines kept to be said when the run is the one reported. */
async function runProbes(lab: Lab): Promise<{ report: ProbeReport; lines: string[] }> {
  const lines: string[] = [];
  const report = await probeLab(lab, {
    onResult: (r) => lines.push(`  ${r.tier}: ${r.verdict}${r.blockedBy ? ` (by ${r.blockedBy})` : ""} ${(r.durationMs / 1000).toFixed(1)} s`),
  });
  return { report, lines };
}

/** The tiers of a report that neither passed nor were skipped, with their verdicts. */
const notPassedOf = (report: ProbeReport) =>
  report.results
    .filter((r) => r.verdict !== "pass" && r.verdict !== "skipped")
    .map((r) => `${r.tier} ${r.verdict}`)
    .join(", ");

/** The last `up` of this lab ended with every probe passing (removed when an `up` starts its Pulumi run, written when its probes pass). */
const lastUpGreen = (lab: Lab) => existsSync(labPaths(lab.name).lastUp);

/** The bundle's kubectl with the lab's admin kubeconfig. */
const labKubectl = (lab: Lab) => [path.join(bundleBinDir(), "kubectl"), `--kubeconfig=${labPaths(lab.name).adminKubeconfig}`];

/**
 * After VMs restarted: the API server's /readyz, then its OpenAPI v2 document, each asked every 5 s for
 * up to 10 minutes in all. The first /openapi/v2 after a start builds the document, over 32 s under
 * TCG: Pulumi's Kubernetes provider gives up at 32 s and calls the cluster unreachable, so it is built here.
 */
async function waitApiServer(lab: Lab): Promise<void> {
  const deadline = Date.now() + 600_000;
  for (const [path, timeout] of [
    ["/readyz", "10s"],
    ["/openapi/v2", "120s"],
  ]) {
    for (;;) {
      const r = await $({ nothrow: true, quiet: true })`${labKubectl(lab)} --request-timeout=${timeout} get --raw=${path}`;
      if (r.exitCode === 0) break;
      if (Date.now() > deadline) throw new Error(`the API server did not answer ${path} within 600 s: ${r.stderr.trim().split("\n").pop()}`);
      await new Promise((resolve) => setTimeout(resolve, 5000));
    }
  }
}

/** After VMs restarted: kubelet re-registers, then every pod's containers start again. */
async function waitReady(lab: Lab): Promise<void> {
  const kubectl = labKubectl(lab);
  for (const args of [
    ["wait", "--for=condition=Ready", "nodes", "--all", "--timeout=600s"],
    ["wait", "--for=condition=Ready", "pods", "--all", "-A", "--timeout=600s"],
  ]) {
    const r = await $({ nothrow: true, quiet: true })`${kubectl} ${args}`;
    if (r.exitCode !== 0) throw new Error(`kubectl ${args.join(" ")}: ${(r.stderr || r.stdout).trim().split("\n").pop()}`);
  }
}

export async function down(file: string): Promise<number> {
  const lab = labOrProblems(file);
  if (!lab) return EXIT.invalid;
  return withLabLock(lab, "down", (interrupt) => downLocked(lab, interrupt));
}

async function downLocked(lab: Lab, interrupt: Interrupt): Promise<number> {
  let failed = false;
  try {
    const { openStack, stackExists } = await import("./stack.ts");
    if (await stackExists(lab)) {
      const stack = await step(`stack: select ${lab.name}`, () => openStack(lab, say));
      if (ownsMachines(lab)) {
        // Everything of a VM or container lab lives on its nodes: removing them (below) removes it all at once,
        // where a destroy would first undo each object and unit, one ssh call at a time.
        await step(`stack: forget ${lab.name} (its ${lab.driver.kind === "qemu" ? "VMs" : "container nodes"} go next)`, () =>
          stack.workspace.removeStack(lab.name, { force: true }),
        );
      } else {
        await step("pulumi destroy: undo every step on the lab's hosts", () =>
          interrupt.during(() => stack.destroy({ onOutput: (out) => process.stderr.write(out), signal: interrupt.signal })),
        );
        await step(`stack: remove ${lab.name}`, () => stack.workspace.removeStack(lab.name));
      }
    }
  } catch (err) {
    if (!(err instanceof StepFailed)) say(`✗ ${(err as Error).message}`);
    failed = true; // the machine layer below still cleans up what is left
  }
  // Whatever the state says: no VM, namespace, key or overlay of this lab survives `down`.
  const { removed } = await step("machines: remove what is left", () => labDown(lab.name, { netns: lab.netns }));
  for (const r of removed) say(`  removed ${r}`);
  return failed ? EXIT.failed : EXIT.ok;
}

export async function status(file: string, json: boolean): Promise<number> {
  const lab = labOrProblems(file);
  if (!lab) return EXIT.invalid;
  const machines = await labStatus(lab.name);
  const live = new Map(machines.nodes.map((n) => [n.name, n]));
  const report = {
    lab: lab.name,
    netns: lab.netns,
    netnsExists: netnsExists(lab.netns),
    nodes: lab.nodes.map((n) => {
      const vm = live.get(n.name);
      const ssh = vm?.ssh ?? (n.ssh ? { host: n.ssh.host, port: n.ssh.port, user: n.ssh.user, keyFile: n.ssh.keyFile } : undefined);
      return {
        name: n.name,
        address: n.address,
        podSubnet: n.podSubnet,
        running: vm?.running ?? false,
        pid: vm?.pid,
        // A VM's QEMU resident memory; a container node's memory cgroup charge.
        rssMiB: vm && ("driver" in vm ? vm.memoryUsageMiB : vm.rssMiB),
        ssh,
        consoleLog: vm?.consoleLog,
      };
    }),
    // Written by the ControlPlane tier; absent until it has run.
    kubeconfig: existsSync(labPaths(lab.name).adminKubeconfig) ? labPaths(lab.name).adminKubeconfig : null,
    certificates: await labCertificates(lab),
  };
  if (json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    console.log(`lab ${report.lab}: namespace ${report.netns} ${report.netnsExists ? "exists" : "does not exist"}`);
    for (const n of report.nodes) {
      const ssh = n.ssh ? `ssh -i ${n.ssh.keyFile} -p ${n.ssh.port} ${n.ssh.user}@${n.ssh.host}` : "no ssh endpoint";
      console.log(`  ${n.name.padEnd(8)} ${n.address.padEnd(15)} ${n.running ? `running (pid ${n.pid}, ${n.rssMiB} MiB)` : "not running"}  ${ssh}`);
    }
    console.log(`  kubeconfig: ${report.kubeconfig ?? "none yet"}`);
    const first = firstToExpire(report.certificates.certs);
    if (first) {
      const soon = first.daysLeft < RENEW_WITHIN_DAYS ? "; renew now: `k8slab certs --renew`" : "";
      console.log(
        `  certificates: ${report.certificates.certs.length} read; the first to expire is ${first.file} on ${first.where}, ${first.notAfter.slice(0, 10)} (${first.daysLeft} days)${soon}; \`k8slab certs\` lists them`,
      );
    }
  }
  return EXIT.ok;
}

/** `k8slab certs`: every certificate's expiry, read from the nodes and the host's kubeconfigs. */
export async function certs(file: string, json: boolean): Promise<number> {
  const lab = labOrProblems(file);
  if (!lab) return EXIT.invalid;
  const { certs, unread } = await labCertificates(lab);
  if (json) process.stdout.write(`${JSON.stringify({ lab: lab.name, certificates: certs, unread }, null, 2)}\n`);
  else process.stdout.write(renderCertificates(certs, unread));
  return certs.length ? EXIT.ok : EXIT.failed;
}

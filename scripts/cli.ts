// The k8slab command line: parses arguments and dispatches to one handler per subcommand.
import "./quiet-bash.ts";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { EXIT } from "../core/exit.ts";
import { labPaths } from "../core/paths.ts";
import { shq } from "../core/shell.ts";
import { labOrProblems } from "./lab-file.ts";
import { stopOnSignals } from "./signals.ts";
import { assertInput, FileRefused, SNAPSHOT_FILE } from "./user-file.ts";

/** The lab used when a command is given none. */
export const DEFAULT_LAB = "labs/two-node.yaml";

type Options = NonNullable<ParseArgsConfig["options"]>;
type Parsed = { values: Record<string, string | boolean | undefined>; positionals: string[] };

interface Command {
  usage: string;
  summary: string;
  options: Options;
  /** Help lines for the options, in the order shown. */
  optionHelp?: string[];
  run(args: Parsed): Promise<number>;
}

const commands: Record<string, Command> = {
  up: {
    usage: "up [LAB] | up --room FILE",
    summary: "build what is missing of the bundle, create, update or repair the lab, then run the probes",
    options: { room: { type: "string" } },
    optionHelp: ["--room FILE     every learner's lab of a room file (see docs/rooms.md), several at once"],
    run: async ({ positionals, values }) =>
      values.room ? (await import("./room.ts")).roomCommand("up", values.room as string) : (await import("./lifecycle.ts")).up(labArg(positionals)),
  },
  reset: {
    usage: "reset LAB",
    summary: "bring one lab back to healthy: undo its scenario, else repair it with up",
    options: {},
    run: async ({ positionals }) => {
      if (positionals.length !== 1) return usageError("reset", "expects exactly one lab file");
      return (await import("./room.ts")).resetCommand(positionals[0]);
    },
  },
  probe: {
    usage: "probe [LAB] [--json] [--junit FILE] [--html FILE] [--pcap DIR] [--tier T]... [--baseline FILE] | probe --room FILE [--json] [--junit FILE]",
    summary: "run the network probes; exit 0 only if every selected tier passes (and, with --baseline, nothing drifted)",
    options: {
      json: { type: "boolean" },
      junit: { type: "string" },
      html: { type: "string" },
      pcap: { type: "string" },
      tier: { type: "string", multiple: true },
      baseline: { type: "string" },
      room: { type: "string" },
    },
    optionHelp: [
      "--json          print results as JSON",
      "--junit FILE    also write a JUnit XML report",
      "--html FILE     also write one self-contained HTML page: the topology coloured by verdict, the evidence a click away",
      "--pcap DIR      keep each capture's packets as pcapng (DIR/<node>-<capture>.pcapng), for Wireshark",
      "--tier T        only this tier (repeatable)",
      "--baseline FILE then diff the live lab against this snapshot",
      "--room FILE     every learner's lab of a room file: the roll-up, as `status --room`",
    ],
    run: async ({ positionals, values }) => {
      if (values.room)
        return (await import("./room.ts")).roomStatus(values.room as string, {
          json: !!values.json,
          ...(values.junit ? { junit: values.junit as string } : {}),
        });
      if (values.baseline) assertInput(values.baseline as string, SNAPSHOT_FILE, "--baseline"); // before the probes, not after
      const probed = await (await import("./probes/command.ts")).probeCommand(labArg(positionals), {
        json: !!values.json,
        junit: values.junit as string | undefined,
        html: values.html as string | undefined,
        pcap: values.pcap as string | undefined,
        tiers: values.tier as string[] | undefined,
      });
      if (!values.baseline || probed === EXIT.invalid) return probed;
      const drift = await (await import("./snapshot/command.ts")).diffCommand(values.baseline as string, undefined, {
        lab: labArg(positionals),
        baselineLabel: "--baseline",
      });
      return Math.max(probed, drift);
    },
  },
  bench: {
    usage: "bench [LAB] [--runs N] [--json]",
    summary: "measure what the lab's paths cost: TCP throughput pod to pod, HTTP latency p50/p99 (same node, cross-node, ClusterIP, ingress)",
    options: { runs: { type: "string" }, json: { type: "boolean" } },
    optionHelp: ["--runs N        runs of each measurement (default 3)", "--json          the figures as JSON"],
    run: async ({ positionals, values }) => (await import("./bench/command.ts")).benchCommand(labArg(positionals), values as Record<string, never>),
  },
  trace: {
    usage: "trace [LAB] FROM TO [--proto icmp|tcp|udp] [--port N] [--json] [--pcap DIR] [--html FILE]",
    summary: "follow one marked packet from FROM to TO, captured at every device it crosses",
    options: { proto: { type: "string" }, port: { type: "string" }, json: { type: "boolean" }, pcap: { type: "string" }, html: { type: "string" } },
    optionHelp: [
      "FROM, TO        WORKLOAD[/INDEX] (a pod: business-manager, data-product, toolbox, coredns), svc/NAME, node/NAME,",
      "                nodeport/NODE, ingress, client (the outside client; FROM only)",
      "--proto P       icmp (pods, nodes), tcp (the default for Services, NodePort, ingress) or udp (kube-dns, from toolbox)",
      "--port N        the port for tcp or udp to a pod or node",
      "--json          the points as JSON (node, device, time, headers, verdict)",
      "--pcap DIR      one pcapng per capture point, and all.pcapng, for Wireshark",
      "--html FILE     the trace drawn on the lab's topology, one self-contained HTML page",
    ],
    run: async ({ positionals, values }) => {
      if (positionals.length < 2 || positionals.length > 3) return usageError("trace", "expects [LAB] FROM TO");
      const [lab, from, to] = positionals.length === 3 ? positionals : [DEFAULT_LAB, ...positionals];
      return (await import("./trace/command.ts")).traceCommand(lab, from, to, values as Record<string, never>);
    },
  },
  snapshot: {
    usage: "snapshot [LAB] [-o FILE]",
    summary: "record the lab's dataplane (links, routes, FDB, iptables, leases, Services, Corefile, versions) as a reviewable baseline",
    options: { output: { type: "string", short: "o" } },
    optionHelp: ["-o, --output FILE   write it to FILE (default: stdout)"],
    run: async ({ positionals, values }) => (await import("./snapshot/command.ts")).snapshotCommand(labArg(positionals), values.output as string | undefined),
  },
  diff: {
    usage: "diff BASELINE [CURRENT] [--lab LAB] [--json] [--junit FILE]",
    summary: "what changed since a snapshot, tier by tier (CURRENT: another snapshot, default the live lab); exit 1 on drift",
    options: { lab: { type: "string" }, json: { type: "boolean" }, junit: { type: "string" } },
    optionHelp: [
      `--lab LAB       the lab file (default ${DEFAULT_LAB})`,
      "--json          the changes as JSON",
      "--junit FILE    also write a JUnit XML report",
    ],
    run: async ({ positionals, values }) => {
      if (positionals.length < 1 || positionals.length > 2) return usageError("diff", "expects a baseline snapshot, and optionally a second one");
      return (await import("./snapshot/command.ts")).diffCommand(positionals[0], positionals[1], {
        lab: (values.lab as string | undefined) ?? DEFAULT_LAB,
        json: !!values.json,
        junit: values.junit as string | undefined,
      });
    },
  },
  scenarios: {
    usage: "scenarios [LAB] [--json]",
    summary: "the workshop's scenarios: id, level, the tier each breaks, title",
    options: { json: { type: "boolean" } },
    optionHelp: ["--json          an array of {id, title, level, tier, story}"],
    run: async ({ positionals, values }) => (await import("./scenarios/command.ts")).listCommand(labArg(positionals), !!values.json),
  },
  break: {
    usage: "break LAB ID | break LAB --random [--hidden]",
    summary: "apply a scenario to a lab that is up, and show its story",
    options: { random: { type: "boolean" }, hidden: { type: "boolean" } },
    optionHelp: ["--random        pick one", "--hidden        do not say which"],
    run: async ({ positionals, values }) => {
      if (positionals.length !== (values.random ? 1 : 2))
        return usageError("break", values.random ? "expects a lab file with --random" : "expects a lab file and a scenario id");
      return (await import("./scenarios/command.ts")).breakCommand(positionals[0], positionals[1], { random: !!values.random, hidden: !!values.hidden });
    },
  },
  hint: {
    usage: "hint [LAB]",
    summary: "the next hint for the scenario applied to the lab",
    options: {},
    run: async ({ positionals }) => (await import("./scenarios/command.ts")).hintCommand(labArg(positionals)),
  },
  check: {
    usage: "check [LAB]",
    summary: "run the probes: is the lab healed? once it is, what was broken and why",
    options: {},
    run: async ({ positionals }) => (await import("./scenarios/command.ts")).checkCommand(labArg(positionals)),
  },
  fix: {
    usage: "fix [LAB]",
    summary: "undo the scenario applied (even after the learner's own changes), until every tier passes",
    options: {},
    run: async ({ positionals }) => (await import("./scenarios/command.ts")).fixCommand(labArg(positionals)),
  },
  down: {
    usage: "down [LAB] | down --room FILE",
    summary: "destroy the lab and leave nothing behind",
    options: { room: { type: "string" } },
    optionHelp: ["--room FILE     every learner's lab of a room file"],
    run: async ({ positionals, values }) =>
      values.room ? (await import("./room.ts")).roomCommand("down", values.room as string) : (await import("./lifecycle.ts")).down(labArg(positionals)),
  },
  certs: {
    usage: "certs [LAB] [--renew] [--json]",
    summary: "each certificate's expiry, read from the nodes; --renew issues every leaf again and restarts what reads it",
    options: { renew: { type: "boolean" }, json: { type: "boolean" } },
    optionHelp: ["--renew         new leaf certificates (same names, new keys), no rebuild", "--json          the list as JSON"],
    run: async ({ positionals, values }) => {
      const lifecycle = await import("./lifecycle.ts");
      if (values.renew && values.json) return usageError("certs", "--renew and --json exclude each other");
      return values.renew ? lifecycle.up(labArg(positionals), { renewCertificates: true }) : lifecycle.certs(labArg(positionals), !!values.json);
    },
  },
  status: {
    usage: "status [LAB] [--json] | status --room FILE [--json] [--junit FILE]",
    summary: "what exists, where, and how to reach it; for a room, the instructor's roll-up",
    options: { json: { type: "boolean" }, room: { type: "string" }, junit: { type: "string" } },
    optionHelp: [
      "--json          netns, nodes (name, address, ssh) and kubeconfig as JSON",
      "--room FILE     one row per learner: its VMs, every tier's verdict (a probe run of each lab), the scenario applied",
      "--junit FILE    with --room: a test case per learner and tier",
    ],
    run: async ({ positionals, values }) =>
      values.room
        ? (await import("./room.ts")).roomStatus(values.room as string, { json: !!values.json, ...(values.junit ? { junit: values.junit as string } : {}) })
        : (await import("./lifecycle.ts")).status(labArg(positionals), !!values.json),
  },
  validate: {
    usage: "validate LAB",
    summary: "check a lab file; exit 2 with one line per problem (path: reason)",
    options: {},
    run: async ({ positionals }) => {
      if (positionals.length !== 1) return usageError("validate", "expects exactly one lab file");
      const lab = labOrProblems(positionals[0]);
      if (!lab) return EXIT.invalid;
      console.log(
        `${positionals[0]}: valid lab "${lab.name}", ${lab.nodes.length} nodes (${lab.nodes.map((n) => `${n.name} ${n.address} pods ${n.podSubnet}`).join(", ")})`,
      );
      return EXIT.ok;
    },
  },
  toolchain: {
    usage: "toolchain [--check] [--json] [--env] [--export FILE | --import FILE]",
    summary: "build or verify the offline bundle; --check exits 0 only when it is complete",
    options: { check: { type: "boolean" }, json: { type: "boolean" }, env: { type: "boolean" }, export: { type: "string" }, import: { type: "string" } },
    optionHelp: [
      "--check         verify versions and checksums, build nothing",
      "--json          print the bundle's state as JSON",
      "--env           print the shell exports that run the bundled pulumi offline (eval them)",
      "--export FILE   build what is missing, then write the bundle, node image and container images to FILE (+ FILE.sha256)",
      "--import FILE   check FILE and put its contents into the cache: a machine that imports builds nothing",
    ],
    run: async ({ values }) => {
      if (values.export && values.import) return usageError("toolchain", "--export and --import exclude each other");
      if (values.export) return (await import("./cache-transfer.ts")).exportCommand(values.export as string);
      if (values.import) return (await import("./cache-transfer.ts")).importCommand(values.import as string);
      const toolchain = await import("./toolchain/index.ts");
      if (values.env) {
        for (const [k, v] of Object.entries(toolchain.pulumiEnv())) process.stdout.write(`export ${k}=${shq(v)}\n`);
        // Never a secret: each lab's stack has its own passphrase file.
        const example = labPaths("LAB").secretsPassphrase;
        process.stdout.write(`# a lab's stack also needs: export PULUMI_CONFIG_PASSPHRASE_FILE=${shq(example)} (LAB: the lab's name)\n`);
        return EXIT.ok;
      }
      return toolchain.toolchainCommand({ check: !!values.check, json: !!values.json });
    },
  },
};

/** The lab file a command works on: the one given, or the reference lab. */
const labArg = (positionals: string[]) => positionals[0] ?? DEFAULT_LAB;

function usageError(command: string, why: string): number {
  console.error(`k8slab ${command}: ${why}\nusage: k8slab ${commands[command].usage}`);
  return EXIT.invalid;
}

export function helpText(): string {
  const width = Math.max(...Object.values(commands).map((c) => c.usage.length));
  return [
    "k8slab: stand up a Kubernetes network built the hard way, and prove it tier by tier.",
    "",
    `usage: npx k8slab COMMAND [ARGS]   (LAB defaults to ${DEFAULT_LAB})`,
    "",
    ...Object.values(commands).map((c) => `  ${c.usage.padEnd(width)}  ${c.summary}`),
    "",
    "Run `npx k8slab COMMAND --help` for a command's options; --debug with any command shows a failure's stack trace.",
  ].join("\n");
}

function commandHelp(name: string): string {
  const c = commands[name];
  return [`usage: k8slab ${c.usage}`, "", c.summary, ...(c.optionHelp ? ["", ...c.optionHelp.map((l) => `  ${l}`)] : [])].join("\n");
}

/** Runs the command line; returns the process exit code. No stack trace reaches a user unless asked for with --debug. */
export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes("--debug");
  const [name, ...rest] = argv.filter((a) => a !== "--debug");
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(helpText());
    return name ? EXIT.ok : EXIT.invalid;
  }
  const command = commands[name];
  if (!command) {
    console.error(`k8slab: unknown command "${name}"\n\n${helpText()}`);
    return EXIT.invalid;
  }
  let parsed: Parsed;
  try {
    parsed = parseArgs({ args: rest, options: { ...command.options, help: { type: "boolean", short: "h" } }, allowPositionals: true, strict: true }) as Parsed;
  } catch (err) {
    return usageError(name, (err as Error).message);
  }
  if (parsed.values.help) {
    console.log(commandHelp(name));
    return EXIT.ok;
  }
  // A command blocked anywhere (a lock, a child, a slow node) still ends on Ctrl-C or SIGTERM: 130, 143.
  stopOnSignals(`k8slab ${name}`);
  try {
    return await command.run(parsed);
  } catch (err) {
    // A file it was given that is not one to read or write (a FIFO, a folder, a symlink loop...): bad input, one line.
    if (err instanceof FileRefused) {
      console.error(`k8slab ${name}: ${err.message}`);
      return EXIT.invalid;
    }
    console.error(
      `k8slab ${name}: ${(err as Error)?.message ?? String(err)}${debug ? `\n${(err as Error)?.stack ?? ""}` : "\n(run with --debug for the stack trace)"}`,
    );
    return EXIT.failed;
  }
}

// Renders systemd service units: one flag per line so a learner can read what each daemon is told.
export interface UnitSpec {
  description: string;
  /** Documentation URL or man page shown by `systemctl status`. */
  documentation?: string;
  after?: string[];
  requires?: string[];
  /** The program and its flags; each flag is rendered on its own continuation line. */
  exec: string[];
  execStartPre?: string[];
  /** Extra [Service] lines (e.g. Delegate=yes, KillMode=process). */
  service?: string[];
  /** A Go daemon: it runs with one scheduler thread (see GO_ONE_PROC). */
  go?: boolean;
}

/**
 * An idle Go daemon's scheduler keeps polling for work on every CPU it may use (futex, epoll); under
 * emulation (TCG) that cost a fifth of the API server's, etcd's and kubelet's idle CPU. One thread is
 * plenty for a lab.
 */
const GO_ONE_PROC = ["# one Go scheduler thread: less idle polling on emulated CPUs", "Environment=GOMAXPROCS=1"];

export function renderUnit(u: UnitSpec): string {
  const [program, ...flags] = u.exec;
  const lines = ["[Unit]", `Description=${u.description}`];
  if (u.documentation) lines.push(`Documentation=${u.documentation}`);
  if (u.after?.length) lines.push(`After=${u.after.join(" ")}`);
  if (u.requires?.length) lines.push(`Requires=${u.requires.join(" ")}`);
  lines.push("", "[Service]");
  for (const pre of u.execStartPre ?? []) lines.push(`ExecStartPre=${pre}`);
  lines.push(flags.length ? `ExecStart=${program} \\\n${flags.map((f) => `  ${f}`).join(" \\\n")}` : `ExecStart=${program}`);
  lines.push("Restart=always", "RestartSec=5", ...(u.go ? GO_ONE_PROC : []), ...(u.service ?? []));
  lines.push("", "[Install]", "WantedBy=multi-user.target", "");
  return lines.join("\n");
}

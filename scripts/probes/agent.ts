// A command runner that stays on a node for the whole probe run: one ssh session per node carries
// every command, side by side. Under TCG a new ssh session costs 0.5-1.5 s on the control-plane node
// (sshd forks and sets up a session, then the shell starts); through the agent a command
// costs its own process start only. The agent is Perl because perl-base is Essential in Debian: on
// every node, nothing to install.
import { spawn } from "node:child_process";
import type { Exec } from "./types.ts";

/** Marks the header of each answer in the agent's output; ASCII RS never starts a line the agent did not write. */
const MARK = "\x1ek8slab-agent";

/**
 * Says `MARK ready`, then reads `<id> <timeout> <command as hex>` lines from stdin; for each, forks a child that runs the
 * command under bash in a process group of its own, its stdout and stderr in unlinked files, and writes one answer:
 * `MARK <id> <exit code> <stdout bytes> <stderr bytes> <overran>\n<stdout><stderr>`. The child is its own `timeout`
 * (one exec less per step, ~60 ms of an emulated CPU each): at the deadline it sends the group SIGTERM, 2 s later
 * SIGKILL, and answers 124 (137 after the kill) with overran 1; a command that exits 124 by itself did not overrun.
 * Answers are written under an flock of ARGV[0] (each child opens it itself: a lock shared through fork would not
 * exclude), so concurrent answers never interleave. At the end of stdin the agent exits; running commands end on
 * their own deadlines. No modules (flock 2 is LOCK_EX; 4 is EINTR): loading strict, warnings, Fcntl and POSIX took a
 * second on a busy emulated CPU.
 */
export const AGENT_SCRIPT = String.raw`
my $lockfile = $ARGV[0];
$SIG{CHLD} = "IGNORE";
$| = 1;
print "${MARK} ready\n";
$| = 0;
while (my $line = <STDIN>) {
  chomp $line;
  my ($id, $timeout, $hex) = split / /, $line;
  my $pid = fork();
  if (!defined $pid) { print STDERR "k8slab agent: fork: $!\n"; next; }
  next if $pid;
  $SIG{CHLD} = "DEFAULT";
  open(my $reply, ">&", \*STDOUT) or exit 1;
  my @files;
  for my $n (0, 1) {
    open(my $fh, "+>", "$lockfile.$$.$n") or exit 1;
    unlink "$lockfile.$$.$n";
    push @files, $fh;
  }
  open(STDIN, "<", "/dev/null");
  open(STDOUT, ">&", $files[0]);
  open(STDERR, ">&", $files[1]);
  my $kid = fork();
  if (defined $kid && $kid == 0) { setpgrp(0, 0); exec("bash", "-c", pack("H*", $hex)); exit 127; }
  my ($rc, $over) = (127, 0);
  if (defined $kid) {
    setpgrp($kid, $kid);
    $SIG{ALRM} = sub { $over++; kill($over == 1 ? "TERM" : "KILL", -$kid); alarm(2); };
    alarm($timeout > int($timeout) ? int($timeout) + 1 : $timeout || 1);
    1 while waitpid($kid, 0) == -1 && $! == 4;
    alarm(0);
    $rc = $over > 1 ? 137 : $over ? 124 : ($? & 127) ? 128 + ($? & 127) : $? >> 8;
  }
  my @data;
  for my $fh (@files) { seek($fh, 0, 0); local $/; my $d = <$fh>; push @data, defined $d ? $d : ""; }
  open(my $lock, ">>", $lockfile) or exit 1;
  flock($lock, 2);
  binmode $reply;
  print $reply "${MARK} $id $rc " . length($data[0]) . " " . length($data[1]) . " " . ($over ? 1 : 0) . "\n" . $data[0] . $data[1];
  close $reply;
  exit 0;
}
`;

/**
 * How long an agent may take from ssh's start to "ready": the TCP connect and sshd's banner (ssh's own
 * ConnectTimeout), the key exchange, the login and perl's start. On a control-plane node at ten times the
 * pace the deadlines were sized on, that took over 30 s.
 */
export const AGENT_START_SEC = 60;

export interface Agent {
  /** True once the agent was killed for not starting in time: a later command should start a new one. */
  startOverran(): boolean;
  /** Runs a bash command on the agent's side, cut off after timeoutSec; never rejects. */
  run(command: string, timeoutSec: number): Promise<Exec>;
  /** Ends the agent (and its session); commands still running end on their own timeouts. */
  close(): Promise<void>;
}

/** Seconds on top of a command's own timeout before the answer is given up for lost. */
const SLACK = 5;

/**
 * Starts the agent with argv, which must end by running `perl -e AGENT_SCRIPT <lockfile>` (locally
 * in tests; through ssh on a node). When the agent cannot start, dies or was closed, every open and
 * later command gets exit code 255, `unreachable`, and what the agent's process said on stderr. One that has not
 * said "ready" within startSec is killed, and its commands overran (exit 124): its session was opened but the
 * node was too busy to finish the login, which says nothing about the network (the runner retries, with a new agent).
 */
export function startAgent(where: string, argv: readonly string[], startSec = AGENT_START_SEC): Agent {
  const child = spawn(argv[0], argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
  const pending = new Map<number, { command: string; timeoutSec: number; started: number; resolve: (e: Exec) => void; timer?: NodeJS.Timeout }>();
  let ready = false;
  // A command's clock starts once the agent runs: the ssh handshake on a busy guest is not the command's time.
  const arm = (id: number) => {
    const p = pending.get(id)!;
    p.started = Date.now();
    p.timer = setTimeout(
      () => answer(id, { exitCode: 124, stdout: "", stderr: `k8slab: no answer from ${where} within ${p.timeoutSec + SLACK} s\n`, overran: true }),
      (p.timeoutSec + SLACK) * 1000,
    );
  };
  let startOverran = false;
  const startTimer = setTimeout(() => {
    startOverran = true;
    stderr += `k8slab: the agent on ${where} did not start within ${startSec} s\n`;
    child.kill("SIGKILL");
  }, startSec * 1000);
  let nextId = 1;
  let buffered = Buffer.alloc(0);
  let stderr = "";
  let endedWith: number | undefined; // the agent process's exit code, once it has ended

  const answer = (id: number, exec: Omit<Exec, "where" | "command" | "ms">) => {
    const p = pending.get(id);
    if (!p) return;
    pending.delete(id);
    clearTimeout(p.timer);
    p.resolve({ where, command: p.command, ms: Date.now() - p.started, ...exec });
  };
  // 255, as ssh itself exits when it cannot connect: the session is gone, whatever ended it.
  const lost = (exitCode: number): Omit<Exec, "where" | "command" | "ms"> =>
    startOverran
      ? { exitCode: 124, stdout: "", stderr, overran: true }
      : { exitCode: 255, stdout: "", stderr: stderr || `k8slab: the agent on ${where} ended (exit ${exitCode})\n`, unreachable: true };

  child.stdout.on("data", (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      const nl = buffered.indexOf(10);
      if (nl < 0) return;
      const line = buffered.subarray(0, nl).toString();
      if (line === `${MARK} ready`) {
        ready = true;
        clearTimeout(startTimer);
        for (const id of pending.keys()) arm(id);
      }
      const header = /^\x1ek8slab-agent (\d+) (\d+) (\d+) (\d+) ([01])$/.exec(line);
      if (!header) {
        buffered = buffered.subarray(nl + 1); // "ready", or not ours (a login banner)
        continue;
      }
      const [outLen, errLen] = [Number(header[3]), Number(header[4])];
      if (buffered.length < nl + 1 + outLen + errLen) return;
      const body = buffered.subarray(nl + 1);
      buffered = body.subarray(outLen + errLen);
      const overran = header[5] === "1" ? { overran: true as const } : {};
      answer(Number(header[1]), {
        exitCode: Number(header[2]),
        stdout: body.subarray(0, outLen).toString(),
        stderr: body.subarray(outLen, outLen + errLen).toString(),
        ...overran,
      });
    }
  });
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.on("error", () => {}); // a dead agent: reported through "close" below
  const closed = new Promise<void>((resolve) =>
    child.on("close", (code, signal) => {
      endedWith = code ?? (signal ? 128 : 255);
      clearTimeout(startTimer);
      for (const id of [...pending.keys()]) answer(id, lost(endedWith));
      resolve();
    }),
  );
  child.on("error", (err) => (stderr += `k8slab: ${argv[0]}: ${err.message}\n`));

  return {
    startOverran: () => startOverran,
    run(command, timeoutSec) {
      return new Promise<Exec>((resolve) => {
        const id = nextId++;
        if (endedWith !== undefined) return resolve({ where, command, ms: 0, ...lost(endedWith) });
        pending.set(id, { command, timeoutSec, started: Date.now(), resolve });
        if (ready) arm(id);
        child.stdin.write(`${id} ${timeoutSec} ${Buffer.from(command).toString("hex")}\n`);
      });
    },
    async close() {
      child.stdin.end();
      const kill = setTimeout(() => child.kill("SIGKILL"), SLACK * 1000);
      await closed;
      clearTimeout(kill);
    },
  };
}

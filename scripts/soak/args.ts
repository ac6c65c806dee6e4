// The soak scripts' command line: [LAB], positive numbers with defaults, a script's own string options,
// and --out FILE (checked as every output is, scripts/user-file.ts). Bad input is one `--name: reason` (or `path: reason`) line each on stderr, and
// undefined: the caller exits 2.
import { parseArgs } from "node:util";
import type { Lab } from "../../core/index.ts";
import { DEFAULT_LAB } from "../cli.ts";
import { loadLab } from "../lab-file.ts";
import { checkOutput } from "../user-file.ts";

export interface SoakArgs<N extends string, S extends string = never> {
  lab: Lab;
  numbers: Record<N, number>;
  /** The script's own string options, as given. */
  strings: Partial<Record<S, string>>;
  out?: string;
}

/**
 * The command line parsed, or every problem with it (one line each); prints nothing. The script's own
 * string options and --out come back either way, so it can add its own checks of them.
 */
export function parseSoakArgs<N extends string, S extends string = never>(
  argv: string[],
  defaults: Record<N, string>,
  wholeNumbers: N[] = [],
  strings: S[] = [],
): { ok: true; args: SoakArgs<N, S> } | { ok: false; problems: string[]; strings: Partial<Record<S, string>>; out?: string } {
  const names = Object.keys(defaults) as N[];
  const options = Object.fromEntries([
    ...names.map((n) => [n, { type: "string", default: defaults[n] }]),
    ...strings.map((s) => [s, { type: "string" }]),
    ["out", { type: "string" }],
  ]);
  let parsed: { values: Record<string, string | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true }) as typeof parsed;
  } catch (err) {
    return { ok: false, problems: [(err as Error).message], strings: {} };
  }
  const numbers = Object.fromEntries(names.map((n) => [n, Number(parsed.values[n])])) as Record<N, number>;
  const problems = names
    .filter((n) => !(numbers[n] > 0) || (wholeNumbers.includes(n) && !Number.isInteger(numbers[n])))
    .map((n) => `--${n}: a positive ${wholeNumbers.includes(n) ? "whole " : ""}number, not "${parsed.values[n]}"`);
  const refused = parsed.values.out === undefined ? undefined : checkOutput(parsed.values.out);
  if (refused) problems.push(`--out ${parsed.values.out}: ${refused}`);
  if (parsed.positionals.length > 1) problems.push(`one lab file at most, not ${parsed.positionals.length}: ${parsed.positionals.join(" ")}`);
  const loaded = loadLab(parsed.positionals[0] ?? DEFAULT_LAB);
  if (!loaded.ok) problems.push(...loaded.problems.map((p) => `${p.path}: ${p.reason}`));
  const given = Object.fromEntries(strings.filter((s) => parsed.values[s] !== undefined).map((s) => [s, parsed.values[s]])) as Partial<Record<S, string>>;
  if (problems.length || !loaded.ok) return { ok: false, problems, strings: given, out: parsed.values.out };
  return { ok: true, args: { lab: loaded.lab, numbers, strings: given, out: parsed.values.out } };
}

/** parseSoakArgs, its problems printed on stderr. */
export function soakArgs<N extends string>(argv: string[], defaults: Record<N, string>, wholeNumbers: N[] = []): SoakArgs<N> | undefined {
  const parsed = parseSoakArgs(argv, defaults, wholeNumbers);
  if (parsed.ok) return parsed.args;
  for (const p of parsed.problems) console.error(p);
  return undefined;
}

// The soak scripts' command line: [LAB], positive numbers with defaults, and --out FILE. Bad input is
// one `--name: reason` (or `path: reason`) line each on stderr, and undefined: the caller exits 2.
import { parseArgs } from "node:util";
import type { Lab } from "../../core/index.ts";
import { DEFAULT_LAB } from "../cli.ts";
import { loadLab } from "../lab-file.ts";

export function soakArgs<N extends string>(
  argv: string[],
  defaults: Record<N, string>,
  wholeNumbers: N[] = [],
): { lab: Lab; numbers: Record<N, number>; out?: string } | undefined {
  const names = Object.keys(defaults) as N[];
  const options = Object.fromEntries([...names.map((n) => [n, { type: "string", default: defaults[n] }]), ["out", { type: "string" }]]);
  let parsed: { values: Record<string, string | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true }) as typeof parsed;
  } catch (err) {
    console.error((err as Error).message);
    return undefined;
  }
  const numbers = Object.fromEntries(names.map((n) => [n, Number(parsed.values[n])])) as Record<N, number>;
  const problems = names
    .filter((n) => !(numbers[n] > 0) || (wholeNumbers.includes(n) && !Number.isInteger(numbers[n])))
    .map((n) => `--${n}: a positive ${wholeNumbers.includes(n) ? "whole " : ""}number, not "${parsed.values[n]}"`);
  const loaded = loadLab(parsed.positionals[0] ?? DEFAULT_LAB);
  if (!loaded.ok) problems.push(...loaded.problems.map((p) => `${p.path}: ${p.reason}`));
  for (const p of problems) console.error(p);
  return problems.length || !loaded.ok ? undefined : { lab: loaded.lab, numbers, out: parsed.values.out };
}

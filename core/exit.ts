// Exit codes of every k8slab command: 0 success, 1 the work failed, 2 bad input (usage, lab file, preflight).
export const EXIT = { ok: 0, failed: 1, invalid: 2 } as const;

/** A command ended by a signal exits 128 + its number, as a shell reports it (130 for Ctrl-C). */
export const exitOnSignal = (signal: NodeJS.Signals) => 128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as Partial<Record<NodeJS.Signals, number>>)[signal]!;

// Exit codes of every k8slab command: 0 success, 1 the work failed, 2 bad input (usage, lab file, preflight).
export const EXIT = { ok: 0, failed: 1, invalid: 2 } as const;

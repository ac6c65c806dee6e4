// The one shell quoter: every command line k8slab builds for bash (local, over ssh, in a pod) quotes with it.

/** A value as one shell word: bare when it is plainly safe, single-quoted otherwise (the empty string too). */
export const shq = (s: string) => (/^[A-Za-z0-9_./=:@%+,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/**
 * A pause of `sec` seconds for bash with no process to start: a timed read on a new pseudo-terminal,
 * which nothing writes to (a `sleep` costs a process start, ~40 ms of an emulated CPU, each time a
 * polling loop looks). Falls back to `sleep` where /dev/ptmx cannot be opened.
 */
export const pause = (sec: number) => `{ read -t ${sec} _ </dev/ptmx || [ $? -gt 128 ] || sleep ${sec}; } 2>/dev/null`;

// The one shell quoter: every command line k8slab builds for bash (local, over ssh, in a pod) quotes with it.

/** A value as one shell word: bare when it is plainly safe, single-quoted otherwise (the empty string too). */
export const shq = (s: string) => (/^[A-Za-z0-9_./=:@%+,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

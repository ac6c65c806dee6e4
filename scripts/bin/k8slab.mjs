#!/usr/bin/env node
// The k8slab command: checks the Node version, loads TypeScript through tsx, then hands over to scripts/cli.ts.
const [major] = process.versions.node.split(".").map(Number);
if (major < 22) {
  console.error(
    `k8slab needs Node >= 22 (this is ${process.version}). Run it as \`npx k8slab\` from the project folder after \`npm ci\`: the project installs its own Node into node_modules/.bin.`,
  );
  process.exit(1); // EXIT.failed: core/exit.ts cannot be loaded on this Node
}
const { register } = await import("tsx/esm/api");
register();
const { main } = await import("../cli.ts");
const { EXIT } = await import("../../core/exit.ts");
// main answers every failure itself; an error that escapes it (a rejection nobody awaited) still gets one line.
const debug = process.argv.includes("--debug");
process.on("unhandledRejection", (err) => {
  console.error(`k8slab: ${err?.message ?? err}${debug ? `\n${err?.stack ?? ""}` : ""}`);
  process.exit(EXIT.failed);
});
process.exitCode = await main(process.argv.slice(2));

#!/usr/bin/env node
// The k8slab command: checks the Node version, loads TypeScript through tsx, then hands over to scripts/cli.ts.
const [major] = process.versions.node.split(".").map(Number);
if (major < 22) {
  console.error(`k8slab needs Node >= 22 (this is ${process.version}). Run it as \`npx k8slab\` from the project folder after \`npm ci\`: the project installs its own Node into node_modules/.bin.`);
  process.exit(1);
}
const { register } = await import("tsx/esm/api");
register();
const { main } = await import("../cli.ts");
process.exitCode = await main(process.argv.slice(2));

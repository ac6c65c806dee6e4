// Entry point of the plugin `pulumi-resource-k8slab`: serves the provider to the Pulumi engine.
import "../../scripts/quiet-bash.ts";
import * as provider from "@pulumi/pulumi/provider/index.js";
import { commandProvider } from "./provider.ts";

await provider.main(commandProvider, process.argv.slice(2));

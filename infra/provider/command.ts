// k8slab:index:Command, the one resource of the project's own Pulumi provider: a shell command
// run on this machine or on a node over SSH, with a create, an optional update and a delete.
// It stands where @pulumi/command would (that provider's plugin is not buildable offline: see
// docs/architecture.md); the semantics follow it: create runs once, a changed trigger replaces.
import * as pulumi from "@pulumi/pulumi";
import type { SshEndpoint } from "../../scripts/machines/spec.ts";

export type { SshEndpoint };

/** The provider's package name: the engine runs the plugin `pulumi-resource-k8slab`. */
export const PROVIDER_PACKAGE = "k8slab";
export const COMMAND_TYPE = `${PROVIDER_PACKAGE}:index:Command`;

export interface CommandArgs {
  /** Where to run: a node's SSH endpoint; absent, the command runs here, from the project root. */
  connection?: pulumi.Input<SshEndpoint>;
  /** Run when the resource is created (bash, `set -euo pipefail`). */
  create: pulumi.Input<string>;
  /** Run when an input other than `triggers` or `connection` changes; default: `create` again. */
  update?: pulumi.Input<string>;
  /** Run when the resource is deleted or replaced, with the inputs it was created with. */
  delete?: pulumi.Input<string>;
  /** Environment variables for every run (exported in the remote shell too). */
  environment?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Fed to the command's standard input (file contents, for example). */
  stdin?: pulumi.Input<string>;
  /** Any change replaces the resource: delete, then create (or the reverse, see deleteBeforeReplace). */
  triggers?: pulumi.Input<unknown[]>;
  /** Seconds before a run is killed and fails; default 600. */
  timeoutSec?: pulumi.Input<number>;
  /** "none" keeps the output out of error messages (key material). Default "all". */
  logging?: pulumi.Input<"all" | "none">;
}

export class Command extends pulumi.CustomResource {
  declare readonly stdout: pulumi.Output<string>;
  declare readonly stderr: pulumi.Output<string>;

  constructor(name: string, args: CommandArgs, opts?: pulumi.CustomResourceOptions) {
    super(COMMAND_TYPE, name, { ...args, stdout: undefined, stderr: undefined }, opts);
  }
}

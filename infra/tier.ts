// The base of every tier: a ComponentResource that runs after the tier below it.
import * as pulumi from "@pulumi/pulumi";
import type { Lab } from "./lab/index.js";

/** What every tier is given: the validated lab, and the tier it builds on. */
export interface TierArgs {
  lab: Lab;
  /** The tier below; this tier's resources wait for it. */
  after?: Tier;
}

export abstract class Tier extends pulumi.ComponentResource {
  /** The tier this one builds on (kept for the tier graph's tests and for reading). */
  readonly after?: Tier;

  protected constructor(kind: string, name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super(`k8slab:tier:${kind}`, name, {}, { ...opts, dependsOn: args.after ? [args.after] : [] });
    this.after = args.after;
  }

  /**
   * Options for the tier's own resources. Pulumi does not pass a component's dependsOn down to its
   * children, so each child waits for the tier below explicitly.
   */
  protected childOpts(extra?: pulumi.CustomResourceOptions, dependsOn: pulumi.Resource[] = []): pulumi.CustomResourceOptions {
    return { ...extra, parent: this, dependsOn: [...(this.after ? [this.after] : []), ...dependsOn] };
  }
}

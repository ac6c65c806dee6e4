// The base of every tier: a ComponentResource that runs after the tier below it.
import * as pulumi from "@pulumi/pulumi";
import type { Lab } from "../core/index.ts";
import type { LabImages } from "../scripts/images/build.ts";

/** What every tier is given: the validated lab, and the tier it builds on. */
export interface TierArgs {
  lab: Lab;
  /** The tier below; this tier's resources wait for it. */
  after?: Tier;
  /** sha256 of each file in the toolchain bundle, by bundle path (bin/kubelet): changes re-push binaries. */
  bundleFiles?: Readonly<Record<string, string>>;
  /** The lab's container images, built offline (scripts/images), by name: pause, coredns, toolbox, ... */
  images?: Readonly<Record<string, LabImage>>;
  /** The images unpacked on the host into a disk image (scripts/images/store.ts): a new VM attaches a copy of it. */
  containerdStore?: string;
  /** The bundle's node binaries on a read-only disk (scripts/toolchain/bundle-disk.ts), when `up` made it. */
  bundleDisk?: { key: string; file: string };
  /** When the leaf certificates were last renewed (`k8slab certs --renew`): a new value issues them again. */
  certificatesRenewed?: string;
}

/** One of the lab's container images (scripts/images/build.ts says what each field is for). */
export type LabImage = LabImages[string];

export abstract class Tier extends pulumi.ComponentResource {
  /** The tier this one builds on (kept for the tier graph's tests and for reading). */
  readonly after?: Tier;

  protected constructor(kind: string, name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super(`k8slab:tier:${kind}`, name, {}, pulumi.mergeOptions(opts, { dependsOn: args.after ? [args.after] : [] }));
    this.after = args.after;
  }

  /** A tier built earlier (walking down from the one below): how a tier reads what it builds on. */
  protected below<T extends Tier>(kind: abstract new (...args: never[]) => T): T {
    for (let t = this.after; t; t = t.after) if (t instanceof kind) return t;
    throw new Error(`${this.constructor.name} needs a ${kind.name} tier below it`);
  }

  /** An image's reference; a lab without built images (unit tests) gets a name that says so. */
  protected imageRef(args: TierArgs, name: string): string {
    return args.images?.[name]?.ref ?? `k8slab.local/${name}:not-built`;
  }

  /**
   * Options for the tier's own resources. Pulumi does not pass a component's dependsOn down to its
   * children, so each child waits for the tier below explicitly (added to any dependsOn in `extra`).
   */
  protected childOpts(extra?: pulumi.CustomResourceOptions, dependsOn: pulumi.Resource[] = []): pulumi.CustomResourceOptions {
    return pulumi.mergeOptions(extra ?? {}, { parent: this, dependsOn: [...(this.after ? [this.after] : []), ...dependsOn] });
  }
}
